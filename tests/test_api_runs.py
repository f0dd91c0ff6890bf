"""Behaviour of the v1 run endpoints: create or join, finish, list, totals and collected cases.

Every test talks to a real server through ``client`` and runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import Tenant

Client = TestClient[Any, Any]

START = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


def at(seconds: float) -> str:
    """Return the ISO 8601 time that is ``seconds`` after START."""
    return (START + dt.timedelta(seconds=seconds)).isoformat()


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def runs_url(tenant: Tenant) -> str:
    return f"/api/v1/projects/{tenant.key}/runs"


async def post_run(client: Client, tenant: Tenant, client_run_id: str, **fields: Any) -> Any:
    """Send a run creation request and return the response without reading it."""
    body = {"client_run_id": client_run_id, "started_at": at(0), **fields}
    return await client.post(runs_url(tenant), json=body, headers=tenant.auth())


async def start_run(client: Client, tenant: Tenant, client_run_id: str, **fields: Any) -> str:
    """Create or join a run and return its id."""
    response = await post_run(client, tenant, client_run_id, **fields)
    assert response.status in (200, 201), await response.text()
    return str((await response.json())["run_id"])


async def finish_run(
    client: Client, tenant: Tenant, run_id: str, expected_status: int = 200, **fields: Any
) -> dict[str, Any]:
    body = {"status": "finished", "finished_at": at(600), **fields}
    response = await client.post(
        f"{runs_url(tenant)}/{run_id}/finish", json=body, headers=tenant.auth()
    )
    assert response.status == expected_status, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def get_run(client: Client, tenant: Tenant, run_id: str) -> dict[str, Any]:
    response = await client.get(f"{runs_url(tenant)}/{run_id}", headers=tenant.auth("viewer"))
    assert response.status == 200, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def list_run_pages(
    client: Client, tenant: Tenant, **query: str
) -> list[list[dict[str, Any]]]:
    """Follow next_cursor from the first page to the last and return the items of each page."""
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        params = dict(query) if cursor is None else {**query, "cursor": cursor}
        response = await client.get(runs_url(tenant), params=params, headers=tenant.auth("viewer"))
        assert response.status == 200, await response.text()
        page = await response.json()
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "pagination does not end"


async def list_runs(client: Client, tenant: Tenant, **query: str) -> list[dict[str, Any]]:
    return [item for page in await list_run_pages(client, tenant, **query) for item in page]


def execution(
    case_key: str, outcome: str = "passed", *, attempt: int = 1, started: float = 0.0
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "case_key": case_key,
        "attempt": attempt,
        "outcome": outcome,
        "phase": "call",
        "duration": 0.25,
        "started_at": at(started),
    }


async def post_executions(
    client: Client, tenant: Tenant, run_id: str, items: list[dict[str, Any]]
) -> dict[str, Any]:
    response = await client.post(
        f"{runs_url(tenant)}/{run_id}/executions",
        json={"executions": items},
        headers=tenant.auth(),
    )
    assert response.status == 200, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def put_cases(
    client: Client, tenant: Tenant, run_id: str, cases: list[dict[str, Any]]
) -> Any:
    """Send a PUT of cases and return the response without reading it."""
    return await client.put(
        f"{runs_url(tenant)}/{run_id}/cases", json={"cases": cases}, headers=tenant.auth()
    )


# --- create and join ----------------------------------------------------------


async def test_create_run_new(client: Client, tenant_a: Tenant) -> None:
    response = await post_run(
        client,
        tenant_a,
        "session-1",
        name="nightly",
        ci={"branch": "main", "commit": "abc123", "build_url": "https://ci.example/1"},
        environment={"python": "3.11.7", "metadata": {"shard": "1"}},
        collected_count=12,
    )
    assert response.status == 201
    created = await response.json()
    assert created["created"] is True
    assert created["status"] == "running"
    run_id = created["run_id"]
    assert str(uuid.UUID(run_id)) == run_id
    page = f"/projects/{tenant_a.key}/runs/{run_id}"
    assert created["report_url"] == str(client.make_url(page))

    run = await get_run(client, tenant_a, run_id)
    assert run["id"] == run_id
    assert run["name"] == "nightly"
    assert run["status"] == "running"
    assert parse_time(run["started_at"]) == START
    assert run["finished_at"] is None
    assert run["ci"]["branch"] == "main"
    assert run["ci"]["commit"] == "abc123"
    assert run["ci"]["build_url"] == "https://ci.example/1"
    assert run["environment"] == {"python": "3.11.7", "metadata": {"shard": "1"}}
    assert run["collected_count"] == 12
    assert run["sessions"] == 1
    assert run["sessions_finished"] == 0
    assert run["tests"] == 0
    assert run["attempts"] == 0


async def test_create_retry_same_run(client: Client, tenant_a: Tenant) -> None:
    first = await post_run(client, tenant_a, "session-1")
    assert first.status == 201
    first_body = await first.json()

    retry = await post_run(client, tenant_a, "session-1")
    assert retry.status == 200
    retry_body = await retry.json()
    assert retry_body["created"] is False
    assert retry_body["run_id"] == first_body["run_id"]
    assert retry_body["report_url"] == first_body["report_url"]

    runs = await list_runs(client, tenant_a)
    assert [run["id"] for run in runs] == [first_body["run_id"]]
    run = await get_run(client, tenant_a, first_body["run_id"])
    assert run["sessions"] == 1


async def test_create_concurrent_retries(client: Client, tenant_a: Tenant) -> None:
    # A client that retries after a timeout may race its own first request.
    responses = await asyncio.gather(*(post_run(client, tenant_a, "session-1") for _ in range(5)))

    statuses = sorted(response.status for response in responses)
    assert statuses == [200, 200, 200, 200, 201], [await response.text() for response in responses]
    bodies = [await response.json() for response in responses]
    assert len({body["run_id"] for body in bodies}) == 1
    assert sum(body["created"] for body in bodies) == 1
    runs = await list_runs(client, tenant_a)
    assert len(runs) == 1


async def test_shards_join_one_run(client: Client, tenant_a: Tenant) -> None:
    first = await post_run(
        client, tenant_a, "shard-1", run_key="build-7", started_at=at(30), collected_count=10
    )
    assert first.status == 201
    first_body = await first.json()
    assert first_body["created"] is True

    second = await post_run(
        client, tenant_a, "shard-2", run_key="build-7", started_at=at(0), collected_count=14
    )
    assert second.status == 200
    second_body = await second.json()
    assert second_body["created"] is False
    assert second_body["run_id"] == first_body["run_id"]
    assert second_body["status"] == "running"

    run = await get_run(client, tenant_a, first_body["run_id"])
    assert run["run_key"] == "build-7"
    assert run["sessions"] == 2
    assert run["sessions_finished"] == 0
    assert parse_time(run["started_at"]) == START
    runs = await list_runs(client, tenant_a)
    assert len(runs) == 1


async def test_shards_finish_after_all(client: Client, tenant_a: Tenant) -> None:
    run_id = await start_run(client, tenant_a, "shard-1", run_key="build-7")
    await start_run(client, tenant_a, "shard-2", run_key="build-7")

    after_first = await finish_run(
        client, tenant_a, run_id, client_run_id="shard-1", finished_at=at(100), exit_status=0
    )
    assert after_first["status"] == "running"
    assert after_first["finished_at"] is None
    assert after_first["sessions_finished"] == 1

    after_second = await finish_run(
        client, tenant_a, run_id, client_run_id="shard-2", finished_at=at(200), exit_status=1
    )
    assert after_second["status"] == "finished"
    assert after_second["sessions_finished"] == 2
    assert parse_time(after_second["finished_at"]) == parse_time(at(200))
    # The run's exit status is the highest of its shards' pytest exit statuses.
    assert after_second["exit_status"] == 1


async def test_interrupted_shard_interrupts_run(client: Client, tenant_a: Tenant) -> None:
    run_id = await start_run(client, tenant_a, "shard-1", run_key="build-7")
    await start_run(client, tenant_a, "shard-2", run_key="build-7")

    after_first = await finish_run(
        client, tenant_a, run_id, status="interrupted", client_run_id="shard-1"
    )
    assert after_first["status"] == "running"

    after_second = await finish_run(client, tenant_a, run_id, client_run_id="shard-2")
    assert after_second["status"] == "interrupted"
    assert after_second["sessions_finished"] == 2


async def test_run_key_race_one_run(client: Client, tenant_a: Tenant) -> None:
    shards = 8
    responses = await asyncio.gather(
        *(post_run(client, tenant_a, f"shard-{n}", run_key="build-7") for n in range(shards))
    )

    statuses = sorted(response.status for response in responses)
    assert statuses == [200] * (shards - 1) + [201], [
        await response.text() for response in responses
    ]
    bodies = [await response.json() for response in responses]
    run_ids = {body["run_id"] for body in bodies}
    assert len(run_ids) == 1
    assert sum(body["created"] for body in bodies) == 1
    runs = await list_runs(client, tenant_a)
    assert [run["id"] for run in runs] == list(run_ids)
    run = await get_run(client, tenant_a, run_ids.pop())
    assert run["sessions"] == shards


# --- finish ---------------------------------------------------------------------


async def test_finish_without_session_id(client: Client, tenant_a: Tenant) -> None:
    run_id = await start_run(client, tenant_a, "shard-1", run_key="build-7")
    await start_run(client, tenant_a, "shard-2", run_key="build-7")

    finished = await finish_run(client, tenant_a, run_id, finished_at=at(90), exit_status=0)

    assert finished["status"] == "finished"
    assert finished["sessions_finished"] == 2
    assert parse_time(finished["finished_at"]) == parse_time(at(90))
    assert finished["exit_status"] == 0
    run = await get_run(client, tenant_a, run_id)
    assert run["status"] == "finished"


async def test_finish_with_session_id(client: Client, tenant_a: Tenant) -> None:
    run_id = await start_run(client, tenant_a, "session-1")

    finished = await finish_run(
        client, tenant_a, run_id, client_run_id="session-1", status="interrupted", exit_status=2
    )

    assert finished["status"] == "interrupted"
    assert finished["exit_status"] == 2
    assert finished["sessions_finished"] == 1
    run = await get_run(client, tenant_a, run_id)
    assert run["status"] == "interrupted"


async def test_finish_unknown_session_422(client: Client, tenant_a: Tenant) -> None:
    run_id = await start_run(client, tenant_a, "session-1")

    error = (await finish_run(client, tenant_a, run_id, 422, client_run_id="session-9"))["error"]

    assert error["code"] == "validation_error"
    assert "session-9" in error["message"]
    assert [detail["field"] for detail in error["details"]] == ["client_run_id"]
    run = await get_run(client, tenant_a, run_id)
    assert run["status"] == "running"
    assert run["sessions_finished"] == 0
    assert run["finished_at"] is None


async def test_executions_after_finish_counted(client: Client, tenant_a: Tenant) -> None:
    run_id = await start_run(client, tenant_a, "session-1")
    await finish_run(client, tenant_a, run_id)

    result = await post_executions(
        client, tenant_a, run_id, [execution("t::a"), execution("t::b", "failed")]
    )

    assert result["accepted"] == 2
    assert result["rejected"] == 0
    run = await get_run(client, tenant_a, run_id)
    assert run["status"] == "finished"
    assert run["totals"]["passed"] == 1
    assert run["totals"]["failed"] == 1
    assert run["tests"] == 2
    assert run["attempts"] == 2


# --- list -----------------------------------------------------------------------

# Rows of (client run id, started_at, branch). The UTC offsets differ and r3 and
# r4 start at the same instant, so only the instant itself gives the order.
LISTED_RUNS = (
    ("r1", "2026-03-01T09:00:00Z", "main"),
    ("r2", "2026-03-01T12:00:00+02:00", "feature"),
    ("r3", "2026-03-01T09:30:00Z", "main"),
    ("r4", "2026-03-01T04:30:00-05:00", "main"),
    ("r5", "2026-03-01T05:45:00-04:00", "feature"),
    ("r6", "2026-03-01T10:00:00.000001Z", "main"),
    ("r7", "2026-02-28T23:59:59.999999Z", None),
)


async def create_listed_runs(client: Client, tenant: Tenant) -> dict[str, str]:
    """Create LISTED_RUNS, finish r1, interrupt r3 and return the client run ids by run id."""
    sessions: dict[str, str] = {}
    for client_run_id, started_at, branch in LISTED_RUNS:
        run_id = await start_run(
            client, tenant, client_run_id, started_at=started_at, ci={"branch": branch}
        )
        sessions[run_id] = client_run_id
    by_session = {session: run_id for run_id, session in sessions.items()}
    await finish_run(client, tenant, by_session["r1"])
    await finish_run(client, tenant, by_session["r3"], status="interrupted")
    return sessions


def session_order(runs: list[dict[str, Any]], sessions: dict[str, str]) -> list[str]:
    return [sessions[run["id"]] for run in runs]


async def test_list_runs_newest_first(client: Client, tenant_a: Tenant) -> None:
    sessions = await create_listed_runs(client, tenant_a)

    runs = await list_runs(client, tenant_a)

    order = session_order(runs, sessions)
    assert order[:3] == ["r6", "r2", "r5"]
    assert sorted(order[3:5]) == ["r3", "r4"]
    assert order[5:] == ["r1", "r7"]
    starts = [parse_time(run["started_at"]) for run in runs]
    assert starts == sorted(starts, reverse=True)


async def test_list_runs_branch_filter(client: Client, tenant_a: Tenant) -> None:
    sessions = await create_listed_runs(client, tenant_a)

    main = await list_runs(client, tenant_a, branch="main")
    feature = await list_runs(client, tenant_a, branch="feature")
    unknown = await list_runs(client, tenant_a, branch="release")

    assert sorted(session_order(main, sessions)) == ["r1", "r3", "r4", "r6"]
    assert all(run["ci"]["branch"] == "main" for run in main)
    assert session_order(feature, sessions) == ["r2", "r5"]
    assert unknown == []


async def test_list_runs_status_filter(client: Client, tenant_a: Tenant) -> None:
    sessions = await create_listed_runs(client, tenant_a)

    finished = await list_runs(client, tenant_a, status="finished")
    interrupted = await list_runs(client, tenant_a, status="interrupted")
    running = await list_runs(client, tenant_a, status="running")

    assert session_order(finished, sessions) == ["r1"]
    assert session_order(interrupted, sessions) == ["r3"]
    assert sorted(session_order(running, sessions)) == ["r2", "r4", "r5", "r6", "r7"]
    assert all(run["status"] == "running" for run in running)


async def test_list_runs_pages(client: Client, tenant_a: Tenant) -> None:
    sessions = await create_listed_runs(client, tenant_a)
    single_page = await list_runs(client, tenant_a)

    pages = await list_run_pages(client, tenant_a, limit="2")

    assert [len(page) for page in pages] == [2, 2, 2, 1]
    paged = [run["id"] for page in pages for run in page]
    assert len(paged) == len(set(paged))
    assert set(paged) == set(sessions)
    assert paged == [run["id"] for run in single_page]


async def test_list_runs_filtered_pages(client: Client, tenant_a: Tenant) -> None:
    sessions = await create_listed_runs(client, tenant_a)

    pages = await list_run_pages(client, tenant_a, branch="main", status="running", limit="1")

    assert [len(page) for page in pages] == [1, 1]
    assert session_order([run for page in pages for run in page], sessions) == ["r6", "r4"]


async def test_list_runs_limit_exact(client: Client, tenant_a: Tenant) -> None:
    await create_listed_runs(client, tenant_a)

    response = await client.get(
        runs_url(tenant_a), params={"limit": str(len(LISTED_RUNS))}, headers=tenant_a.auth()
    )

    page = await response.json()
    assert len(page["items"]) == len(LISTED_RUNS)
    assert page["next_cursor"] is None


# --- totals ---------------------------------------------------------------------


async def test_run_totals_final_attempts(client: Client, tenant_a: Tenant) -> None:
    run_id = await start_run(client, tenant_a, "session-1", collected_count=8)
    keys = [f"tests/test_totals.py::test_{name}" for name in "abcdefgh"]
    upserted = await put_cases(client, tenant_a, run_id, [{"key": key} for key in keys])
    assert upserted.status == 200
    a, b, c, d, e, f, g, _never_run = keys
    items = [
        execution(a, "passed"),
        # b fails, then passes on its rerun.
        execution(b, "failed", attempt=1, started=1),
        execution(b, "passed", attempt=2, started=2),
        # c fails on every attempt.
        execution(c, "failed", attempt=1, started=3),
        execution(c, "failed", attempt=2, started=4),
        execution(d, "skipped", started=5),
        execution(e, "error", started=6),
        execution(f, "xfailed", started=7),
        # g's rerun ran on a worker whose clock is behind: the attempt number decides.
        execution(g, "failed", attempt=1, started=9),
        execution(g, "passed", attempt=2, started=8),
    ]
    result = await post_executions(client, tenant_a, run_id, items)
    assert result["accepted"] == len(items)

    run = await get_run(client, tenant_a, run_id)

    assert run["totals"] == {
        "passed": 3,
        "failed": 1,
        "error": 1,
        "skipped": 1,
        "xfailed": 1,
        "xpassed": 0,
    }
    assert run["tests"] == 7
    assert run["attempts"] == len(items)
    assert run["passed_on_rerun"] == 2
    assert run["planned"] == len(keys)
    assert run["collected_count"] == 8

    listed = await list_runs(client, tenant_a)
    assert listed[0]["totals"] == run["totals"]
    assert listed[0]["tests"] == run["tests"]


async def test_run_totals_per_run(client: Client, tenant_a: Tenant) -> None:
    first = await start_run(client, tenant_a, "session-1")
    second = await start_run(client, tenant_a, "session-2", started_at=at(1000))
    await post_executions(client, tenant_a, first, [execution("t::a"), execution("t::b")])
    await post_executions(client, tenant_a, second, [execution("t::a", "failed")])

    listed = {run["id"]: run for run in await list_runs(client, tenant_a)}

    assert listed[first]["totals"]["passed"] == 2
    assert listed[first]["totals"]["failed"] == 0
    assert listed[first]["tests"] == 2
    assert listed[second]["totals"]["passed"] == 0
    assert listed[second]["totals"]["failed"] == 1
    assert listed[second]["tests"] == 1


# --- cases ----------------------------------------------------------------------


async def case_of(client: Client, tenant: Tenant, run_id: str, case_key: str) -> dict[str, Any]:
    """Return the case with case_key as its history shows it.

    The run must have an execution of the case, because the case id comes from one.
    """
    response = await client.get(
        f"{runs_url(tenant)}/{run_id}/executions", headers=tenant.auth("viewer")
    )
    assert response.status == 200, await response.text()
    executions = (await response.json())["items"]
    case_id = next(item["case_id"] for item in executions if item["case_key"] == case_key)
    history = await client.get(
        f"/api/v1/projects/{tenant.key}/cases/{case_id}/history", headers=tenant.auth("viewer")
    )
    assert history.status == 200, await history.text()
    case: dict[str, Any] = (await history.json())["case"]
    return case


async def test_put_cases_creates(client: Client, tenant_a: Tenant) -> None:
    run_id = await start_run(client, tenant_a, "session-1")
    cases = [
        {
            "key": "tests/test_shop.py::test_checkout[visa]",
            "node_id": "tests/test_shop.py::test_checkout[visa]",
            "file": "tests/test_shop.py",
            "name": "test_checkout[visa]",
            "line": 12,
            "function": "test_checkout",
            "markers": ["slow"],
        },
        {"key": "CHECKOUT-12", "file": "tests/test_shop.py", "name": "test_refund"},
    ]

    response = await put_cases(client, tenant_a, run_id, cases)

    assert response.status == 200
    assert await response.json() == {"received": 2, "created": 2}
    run = await get_run(client, tenant_a, run_id)
    assert run["planned"] == 2
    assert run["tests"] == 0


async def test_put_cases_again_updates(client: Client, tenant_a: Tenant) -> None:
    run_id = await start_run(client, tenant_a, "session-1")
    key = "tests/test_shop.py::test_checkout"
    first = await put_cases(
        client, tenant_a, run_id, [{"key": key, "name": "test_checkout", "line": 10}]
    )
    assert (await first.json())["created"] == 1
    await post_executions(client, tenant_a, run_id, [execution(key)])
    before = await case_of(client, tenant_a, run_id, key)

    second = await put_cases(
        client,
        tenant_a,
        run_id,
        [{"key": key, "name": "test_checkout_v2", "line": 42, "markers": ["smoke"]}],
    )

    assert second.status == 200
    assert await second.json() == {"received": 1, "created": 0}
    after = await case_of(client, tenant_a, run_id, key)
    assert after["id"] == before["id"]
    assert after["name"] == "test_checkout_v2"
    assert after["line"] == 42
    assert after["markers"] == ["smoke"]
    assert after["first_seen_at"] == before["first_seen_at"]
    assert parse_time(after["last_seen_at"]) >= parse_time(before["last_seen_at"])
    run = await get_run(client, tenant_a, run_id)
    assert run["planned"] == 1


async def test_put_cases_second_run(client: Client, tenant_a: Tenant) -> None:
    first = await start_run(client, tenant_a, "session-1")
    second = await start_run(client, tenant_a, "session-2")
    cases = [{"key": "t::a"}, {"key": "t::b"}]
    await put_cases(client, tenant_a, first, cases)

    response = await put_cases(client, tenant_a, second, [*cases, {"key": "t::c"}])

    assert await response.json() == {"received": 3, "created": 1}
    assert (await get_run(client, tenant_a, first))["planned"] == 2
    assert (await get_run(client, tenant_a, second))["planned"] == 3


async def test_put_cases_duplicate_key_422(client: Client, tenant_a: Tenant) -> None:
    run_id = await start_run(client, tenant_a, "session-1")

    response = await put_cases(
        client, tenant_a, run_id, [{"key": "t::a"}, {"key": "t::b"}, {"key": "t::a"}]
    )

    assert response.status == 422
    error = (await response.json())["error"]
    assert error["code"] == "validation_error"
    assert "'t::a'" in error["message"]
    assert [detail["field"] for detail in error["details"]] == ["cases"]
    run = await get_run(client, tenant_a, run_id)
    assert run["planned"] == 0
