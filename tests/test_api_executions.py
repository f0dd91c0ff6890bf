"""Behaviour of the v1 execution endpoints: batches, listing and one case's history.

Every test talks to a real server through ``client`` and runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Tenant

Client = TestClient[Any, Any]

START = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


def at(seconds: float) -> str:
    """Return the ISO 8601 time that is ``seconds`` after START."""
    return (START + dt.timedelta(seconds=seconds)).isoformat()


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def project_url(tenant: Tenant) -> str:
    return f"/api/v1/projects/{tenant.key}"


async def start_run(
    client: Client, tenant: Tenant, client_run_id: str = "session-1", **fields: Any
) -> str:
    body = {"client_run_id": client_run_id, "started_at": at(0), **fields}
    response = await client.post(f"{project_url(tenant)}/runs", json=body, headers=tenant.auth())
    assert response.status == 201, await response.text()
    return str((await response.json())["run_id"])


def execution(
    case_key: str = "tests/test_shop.py::test_checkout",
    outcome: str = "passed",
    *,
    attempt: int = 1,
    started: float = 0.0,
    **fields: Any,
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "case_key": case_key,
        "attempt": attempt,
        "outcome": outcome,
        "phase": "call",
        "duration": 0.25,
        "started_at": at(started),
        **fields,
    }


async def post_executions(
    client: Client, tenant: Tenant, run_id: str, items: list[dict[str, Any]]
) -> dict[str, Any]:
    response = await client.post(
        f"{project_url(tenant)}/runs/{run_id}/executions",
        json={"executions": items},
        headers=tenant.auth(),
    )
    assert response.status == 200, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def get_page(client: Client, tenant: Tenant, path: str, **query: str) -> dict[str, Any]:
    response = await client.get(
        f"{project_url(tenant)}/{path}", params=query, headers=tenant.auth("viewer")
    )
    assert response.status == 200, await response.text()
    page: dict[str, Any] = await response.json()
    return page


async def all_pages(
    client: Client, tenant: Tenant, path: str, **query: str
) -> list[list[dict[str, Any]]]:
    """Follow next_cursor from the first page to the last and return the items of each page."""
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        params = dict(query) if cursor is None else {**query, "cursor": cursor}
        page = await get_page(client, tenant, path, **params)
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "pagination does not end"


async def list_executions(
    client: Client, tenant: Tenant, run_id: str, **query: str
) -> list[dict[str, Any]]:
    pages = await all_pages(client, tenant, f"runs/{run_id}/executions", **query)
    return [item for page in pages for item in page]


def fields_named(message: str) -> set[str]:
    """Return the field paths a rejection message names, as in 'outcome: Field required'."""
    return {part.split(": ", 1)[0] for part in message.split("; ")}


# --- batches --------------------------------------------------------------------


async def test_batch_counts(client: Client, tenant_a: Tenant) -> None:
    run_id = await start_run(client, tenant_a)
    stored = execution("t::a")
    await post_executions(client, tenant_a, run_id, [stored])
    missing_outcome = execution("t::c")
    del missing_outcome["outcome"]
    bad_started_at = execution("t::d", started_at="yesterday")

    result = await post_executions(
        client,
        tenant_a,
        run_id,
        [execution("t::b"), stored, missing_outcome, bad_started_at],
    )

    assert result["accepted"] == 1
    assert result["duplicate"] == 1
    assert result["rejected"] == 2
    rejected = result["rejected_items"]
    assert [item["index"] for item in rejected] == [2, 3]
    assert [item["id"] for item in rejected] == [missing_outcome["id"], bad_started_at["id"]]
    assert fields_named(rejected[0]["message"]) == {"outcome"}
    assert fields_named(rejected[1]["message"]) == {"started_at"}
    listed = await list_executions(client, tenant_a, run_id)
    assert sorted(item["case_key"] for item in listed) == ["t::a", "t::b"]


INVALID_ITEMS = [
    pytest.param({"outcome": "exploded"}, "outcome", id="unknown-outcome"),
    pytest.param({"id": "not-a-uuid"}, "id", id="non-uuid-id"),
    pytest.param({"started_at": "2026-03-01T09:00:00"}, "started_at", id="naive-started-at"),
    pytest.param(
        # A valid instant that falls after the year 9999 once converted to UTC.
        {"started_at": "9999-12-31T23:00:00-05:00"},
        "started_at",
        id="started-at-out-of-range",
    ),
    pytest.param({"duration": -1}, "duration", id="negative-duration"),
    pytest.param({"duration": "slow"}, "duration", id="text-duration"),
    pytest.param({"attempt": 0}, "attempt", id="attempt-zero"),
    pytest.param({"phase": "body"}, "phase", id="unknown-phase"),
    pytest.param({"case_key": ""}, "case_key", id="empty-case-key"),
    pytest.param({"case_key": "k" * 501}, "case_key", id="long-case-key"),
    pytest.param({"worker": "w" * 51}, "worker", id="long-worker"),
    pytest.param({"colour": "red"}, "colour", id="unknown-field"),
    pytest.param({"parameters": {"browser": 5}}, "parameters.browser", id="parameter-not-text"),
    pytest.param(
        {"phases": {"call": {"outcome": "error"}}}, "phases.call.outcome", id="phase-outcome"
    ),
]


@pytest.mark.parametrize(("change", "field"), INVALID_ITEMS)
async def test_batch_rejects_item(
    client: Client, tenant_a: Tenant, change: dict[str, Any], field: str
) -> None:
    run_id = await start_run(client, tenant_a)
    valid = execution("t::valid")
    invalid = {**execution("t::invalid"), **change}

    result = await post_executions(client, tenant_a, run_id, [valid, invalid])

    assert result["accepted"] == 1
    assert result["duplicate"] == 0
    assert result["rejected"] == 1
    [rejected] = result["rejected_items"]
    assert rejected["index"] == 1
    assert rejected["id"] == invalid["id"]
    assert field in fields_named(rejected["message"])
    listed = await list_executions(client, tenant_a, run_id)
    assert [item["id"] for item in listed] == [valid["id"]]


async def test_batch_item_without_id(client: Client, tenant_a: Tenant) -> None:
    run_id = await start_run(client, tenant_a)
    item = execution()
    del item["id"]

    result = await post_executions(client, tenant_a, run_id, [item])

    assert result["rejected"] == 1
    [rejected] = result["rejected_items"]
    assert rejected["id"] is None
    assert fields_named(rejected["message"]) == {"id"}


async def test_execution_fields_round_trip(client: Client, tenant_a: Tenant) -> None:
    run_id = await start_run(client, tenant_a)
    sent = execution(
        "tests/test_shop.py::test_checkout[visa-EUR]",
        "failed",
        attempt=2,
        phase="setup",
        duration=1.5,
        finished_at=at(1.5),
        worker="gw3",
        message="AssertionError: total was 9.99 € ≠ 10.00 €",
        traceback="Traceback (most recent call last):\n  ...",
        stdout="checkout started\n",
        stderr="warning: slow card service\n",
        log="INFO shop: paid\n",
        reason=None,
        parameters={"card": "visa", "currency": "EUR"},
        phases={
            "setup": {"outcome": "failed", "duration": 1.5},
            "teardown": {"outcome": "passed", "duration": 0.0},
        },
    )
    await post_executions(client, tenant_a, run_id, [sent])

    [stored] = await list_executions(client, tenant_a, run_id)

    assert stored["id"] == sent["id"]
    assert stored["run_id"] == run_id
    assert stored["case_key"] == sent["case_key"]
    assert parse_time(stored["started_at"]) == parse_time(sent["started_at"])
    assert parse_time(stored["finished_at"]) == parse_time(sent["finished_at"])
    for name in (
        "attempt",
        "outcome",
        "phase",
        "duration",
        "worker",
        "message",
        "traceback",
        "stdout",
        "stderr",
        "log",
        "reason",
        "parameters",
        "phases",
    ):
        assert stored[name] == sent[name], name


async def test_execution_output_with_nul(client: Client, tenant_a: Tenant) -> None:
    # A test may print any character, and pytest captures it unchanged.
    run_id = await start_run(client, tenant_a)
    sent = execution(stdout="before\x00after", message="bytes b'\x00' differ")

    result = await post_executions(client, tenant_a, run_id, [sent])

    assert result["accepted"] == 1
    [stored] = await list_executions(client, tenant_a, run_id)
    assert stored["stdout"].startswith("before")
    assert stored["stdout"].endswith("after")


# --- listing --------------------------------------------------------------------

OUTCOMES_POSTED = ["passed", "failed", "passed", "error", "skipped", "failed", "passed"]


async def test_list_executions_outcome_filter(client: Client, tenant_a: Tenant) -> None:
    run_id = await start_run(client, tenant_a)
    items = [execution(f"t::{n}", outcome, started=n) for n, outcome in enumerate(OUTCOMES_POSTED)]
    await post_executions(client, tenant_a, run_id, items)

    failed = await list_executions(client, tenant_a, run_id, outcome="failed")
    passed = await list_executions(client, tenant_a, run_id, outcome="passed")
    xpassed = await list_executions(client, tenant_a, run_id, outcome="xpassed")

    assert [item["case_key"] for item in failed] == ["t::1", "t::5"]
    assert all(item["outcome"] == "failed" for item in failed)
    assert [item["case_key"] for item in passed] == ["t::0", "t::2", "t::6"]
    assert xpassed == []


async def test_list_executions_pages(client: Client, tenant_a: Tenant) -> None:
    run_id = await start_run(client, tenant_a)
    # Pairs that start at the same instant must still be paged without loss.
    starts = [0, 0, 1, 1, 1, 2, 3]
    items = [execution(f"t::{n}", started=start) for n, start in enumerate(starts)]
    await post_executions(client, tenant_a, run_id, items)

    pages = await all_pages(client, tenant_a, f"runs/{run_id}/executions", limit="3")

    assert [len(page) for page in pages] == [3, 3, 1]
    paged = [item["id"] for page in pages for item in page]
    assert len(paged) == len(set(paged))
    assert set(paged) == {item["id"] for item in items}
    listed_starts = [parse_time(item["started_at"]) for page in pages for item in page]
    assert listed_starts == sorted(listed_starts)


async def test_list_executions_filtered_pages(client: Client, tenant_a: Tenant) -> None:
    run_id = await start_run(client, tenant_a)
    items = [execution(f"t::{n}", outcome, started=n) for n, outcome in enumerate(OUTCOMES_POSTED)]
    await post_executions(client, tenant_a, run_id, items)

    pages = await all_pages(
        client, tenant_a, f"runs/{run_id}/executions", outcome="passed", limit="2"
    )

    assert [len(page) for page in pages] == [2, 1]
    assert [item["case_key"] for page in pages for item in page] == ["t::0", "t::2", "t::6"]


async def test_list_executions_empty_run(client: Client, tenant_a: Tenant) -> None:
    run_id = await start_run(client, tenant_a)

    page = await get_page(client, tenant_a, f"runs/{run_id}/executions")

    assert page == {"items": [], "next_cursor": None}


# --- case history ---------------------------------------------------------------

CASE_KEY = "tests/test_shop.py::test_checkout"


async def post_history(client: Client, tenant: Tenant) -> tuple[str, str, list[dict[str, Any]]]:
    """Execute CASE_KEY in two runs, with a rerun in the first.

    Return both run ids and CASE_KEY's executions in the order they started.
    """
    nightly = await start_run(
        client, tenant, "nightly", name="nightly", ci={"branch": "main", "commit": "aaa111"}
    )
    feature = await start_run(
        client,
        tenant,
        "feature",
        name="feature",
        started_at=at(1000),
        ci={"branch": "feature/pay", "commit": "bbb222"},
    )
    first = execution(CASE_KEY, "failed", attempt=1, started=10)
    rerun = execution(CASE_KEY, "passed", attempt=2, started=20)
    other_case = execution("tests/test_shop.py::test_refund", started=30)
    latest = execution(CASE_KEY, "passed", started=1010, duration=0.75)
    await post_executions(client, tenant, nightly, [first, rerun, other_case])
    await post_executions(client, tenant, feature, [latest])
    return nightly, feature, [first, rerun, latest]


async def case_id_of(client: Client, tenant: Tenant, run_id: str, case_key: str) -> str:
    listed = await list_executions(client, tenant, run_id)
    return next(str(item["case_id"]) for item in listed if item["case_key"] == case_key)


async def test_case_history_newest_first(client: Client, tenant_a: Tenant) -> None:
    nightly, feature, (first, rerun, latest) = await post_history(client, tenant_a)
    case_id = await case_id_of(client, tenant_a, feature, CASE_KEY)

    history = await get_page(client, tenant_a, f"cases/{case_id}/history")

    assert history["case"]["id"] == case_id
    assert history["case"]["key"] == CASE_KEY
    assert history["next_cursor"] is None
    items = history["items"]
    assert [item["execution_id"] for item in items] == [latest["id"], rerun["id"], first["id"]]
    assert [item["run_id"] for item in items] == [feature, nightly, nightly]
    assert [item["run_name"] for item in items] == ["feature", "nightly", "nightly"]
    assert [item["branch"] for item in items] == ["feature/pay", "main", "main"]
    assert [item["commit"] for item in items] == ["bbb222", "aaa111", "aaa111"]
    assert [item["attempt"] for item in items] == [1, 2, 1]
    assert [item["outcome"] for item in items] == ["passed", "passed", "failed"]
    assert items[0]["duration"] == 0.75
    assert parse_time(items[0]["started_at"]) == parse_time(latest["started_at"])


async def test_case_history_pages(client: Client, tenant_a: Tenant) -> None:
    _, feature, (first, rerun, latest) = await post_history(client, tenant_a)
    case_id = await case_id_of(client, tenant_a, feature, CASE_KEY)

    pages = await all_pages(client, tenant_a, f"cases/{case_id}/history", limit="1")

    assert [len(page) for page in pages] == [1, 1, 1]
    paged = [item["execution_id"] for page in pages for item in page]
    assert paged == [latest["id"], rerun["id"], first["id"]]
