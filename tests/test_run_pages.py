"""The report pages, parsed as HTML, over known runs on SQLite and PostgreSQL."""

from __future__ import annotations

import re

import pytest

from ingest_server.services.container import Services
from ingest_server.web.templating import format_duration
from tests.conftest import Tenant, create_member, sign_in
from tests.pages import Element, parse
from tests.run_data import Client, Reporter, attempt, failure


async def page(client: Client, tenant: Tenant, path: str, status: int = 200) -> Element:
    response = await client.get(path, headers=tenant.auth("viewer"), allow_redirects=False)
    assert response.status == status, await response.text()
    return parse(await response.text())


async def test_runs_page_rows(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await reporter.run([attempt("t::a"), failure("t::b", "E: x")], name="first", started=0)
    await reporter.run([attempt("t::a")], name="second", started=10, build_url="javascript:x")

    doc = await page(client, tenant_a, f"/projects/{tenant_a.key}/runs")
    rows = doc.by_id("runs").rows()

    assert [row[1] for row in rows] == ["second", "first"]
    assert rows[1][-1] == "50.0 %"
    assert "javascript:x" not in doc.links()


async def test_run_page_sections(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    run_id = await reporter.run([attempt("t::a"), failure("t::<script>", "ValueError: <b>")])

    doc = await page(client, tenant_a, f"/projects/{tenant_a.key}/runs/{run_id}")
    groups = doc.find_all("article", class_="failure-group")

    assert doc.find("li", data_outcome="failed") is not None
    assert len(groups) == 1
    assert groups[0].attrs["data-count"] == "1"
    assert doc.find("script") is None
    assert "t::<script>" in doc.by_id("new-failures").text


async def test_case_page_history(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await reporter.run([failure("t::a", "ValueError: 1", stdout="hello")], started=0)
    await reporter.run([attempt("t::a")], started=10)
    report = await reporter.get_json(f"/runs/{reporter.run_ids[0]}/report")
    case_id = report["failure_groups"][0]["tests"][0]["id"]

    doc = await page(client, tenant_a, f"/projects/{tenant_a.key}/cases/{case_id}")
    strip = doc.find("ol", class_="strip")

    assert strip is not None
    assert [li.attrs["data-outcome"] for li in strip.find_all("li")] == ["failed", "passed"]
    assert doc.by_id("stdout").text == "hello"


async def test_compare_page_form(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await reporter.run([attempt("t::a")], started=0)
    await reporter.run([failure("t::a", "E: x")], started=10)

    doc = await page(client, tenant_a, f"/projects/{tenant_a.key}/compare")
    form = doc.by_id("compare-form")
    selected = [option.attrs["value"] for option in form.find_all("option", selected=None)]

    assert selected == [reporter.run_ids[0], reporter.run_ids[1]]


async def test_gate_page_viewer_cannot_edit(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await reporter.run([attempt("t::a")])

    doc = await page(client, tenant_a, f"/projects/{tenant_a.key}/gate")

    assert doc.find("form", id="gate-form") is None
    assert doc.by_id("verdict").find("p", data_passed="true") is not None


async def test_runs_page_bad_status(client: Client, tenant_a: Tenant) -> None:
    doc = await page(client, tenant_a, f"/projects/{tenant_a.key}/runs?status=done", status=422)

    assert "'done'" in doc.text


async def test_running_run_page_is_snapshot(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    run_id = await reporter.run([attempt("t::a")], collected=["t::a", "t::b", "t::c"], settle=None)

    doc = await page(client, tenant_a, f"/projects/{tenant_a.key}/runs/{run_id}")
    totals = doc.by_id("totals")
    not_run = totals.find("li", data_outcome="not_run")

    assert doc.find(id="not-run") is None
    assert "when the run ends" in doc.by_id("not-run-pending").text
    assert "as of" in doc.by_id("totals-title").text
    assert "as of" in doc.by_id("failure-groups-title").text
    assert not_run is not None
    assert not_run.find("span", class_="value") is not None
    assert not_run.find("span", class_="value").text == "0"  # type: ignore[union-attr]
    assert "2 collected tests have no result yet" in doc.by_id("snapshot-note").text


async def test_finished_run_page_lists_not_run(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    run_id = await reporter.run([attempt("t::a")], collected=["t::a", "t::b"])

    doc = await page(client, tenant_a, f"/projects/{tenant_a.key}/runs/{run_id}")

    assert doc.by_id("not-run").text == "t::b"
    assert "as of" not in doc.by_id("totals-title").text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "\N{EN DASH}"),
        (0.0, "0 ms"),
        (0.000001, "< 0.01 ms"),
        (0.00031, "0.31 ms"),
        (0.0042, "4.2 ms"),
        (0.85, "850 ms"),
        (12.44, "12.4 s"),
        (185, "3 min 05 s"),
    ],
)
def test_duration_filter_precision(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


async def test_case_page_failure_details(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    message = "AssertionError: got 6.5\nassert 6.5 == 7.0"
    run_id = await reporter.run(
        [failure("t::a", message, duration=0.0003)], name="nightly 3", started=0
    )
    await reporter.run([attempt("t::a", duration=0.0004)], started=10)
    report = await reporter.get_json(f"/runs/{run_id}/report")
    case_id = report["failure_groups"][0]["tests"][0]["id"]

    doc = await page(client, tenant_a, f"/projects/{tenant_a.key}/cases/{case_id}")
    shown = doc.by_id("failure-message")

    assert doc.by_id("last-failure-run").text == "run nightly 3"
    assert shown.tag == "pre"
    assert "\n" in "".join(part for part in shown.parts if isinstance(part, str))
    assert "no captured output" in doc.by_id("no-output").text.lower()
    assert doc.by_id("strip-direction").text == "Oldest → newest"
    assert [row[-1] for row in doc.by_id("history-table").rows()] == ["0.40 ms", "0.30 ms"]
    assert "milliseconds" in doc.by_id("durations").text


async def test_runs_page_result_and_other(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await reporter.run(
        [attempt("t::a"), failure("t::b", "E: x"), attempt("t::c", "xfailed")],
        name="red",
        started=0,
    )
    await reporter.run([attempt("t::a"), attempt("t::d", "xpassed")], name="green", started=10)

    doc = await page(client, tenant_a, f"/projects/{tenant_a.key}/runs")
    results = {
        row.find_all("td")[1].text: row.find("span", class_="run-result")
        for row in doc.by_id("runs").find_all("tr", data_run_id=None)
    }
    rows = doc.by_id("runs").rows()

    assert results["red"] is not None
    assert results["red"].attrs["data-result"] == "failed"  # type: ignore[union-attr]
    assert results["green"] is not None
    assert results["green"].attrs["data-result"] == "passed"  # type: ignore[union-attr]
    for row in rows:
        tests, passed, failed, error, skipped, other = (int(cell) for cell in row[7:13])
        assert passed + failed + error + skipped + other == tests


async def test_run_page_hides_empty_environment(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    run_id = await reporter.run(
        [attempt("t::a")], environment={"python": "3.12.1", "metadata": {}}
    )

    doc = await page(client, tenant_a, f"/projects/{tenant_a.key}/runs/{run_id}")
    labels = [row[0] for row in doc.by_id("metadata").rows()]

    assert "python" in labels
    assert "metadata" not in labels
    assert "Job" not in labels


async def test_compare_page_failed_and_error(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    base = await reporter.run([attempt("t::a"), attempt("t::b")], started=0)
    head = await reporter.run(
        [failure("t::a", "E: x"), failure("t::b", "E: y", outcome="error")], started=10
    )

    doc = await page(client, tenant_a, f"/projects/{tenant_a.key}/compare?base={base}&head={head}")
    table = doc.by_id("compare-runs")
    header = [th.text for th in table.find("thead").find_all("th")]  # type: ignore[union-attr]
    head_row = table.rows()[1]

    assert header[5:7] == ["Failed", "Error"]
    assert head_row[5:7] == ["1", "1"]


async def test_gate_page_human_labels(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await reporter.run([attempt("t::a")], name="nightly 9")

    doc = await page(client, tenant_a, f"/projects/{tenant_a.key}/gate")
    row = doc.by_id("verdict-rules").rows()[0]

    assert doc.by_id("verdict-run").text == "nightly 9"
    assert row[0] == "No new failures"
    assert row[1] == "yes"


async def test_account_revoke_shows_message(
    client: Client, services: Services, tenant_a: Tenant
) -> None:
    member = await sign_in(client, services, tenant_a)
    created = await client.post("/account/tokens", data=member.form(name="laptop"))
    assert created.status == 201

    response = await client.post(
        "/account/tokens/1/revoke", data=member.form(), allow_redirects=False
    )
    assert response.status == 303
    assert response.headers["Location"] == "/account?done=token-revoked"
    doc = parse(await (await client.get(response.headers["Location"])).text())
    token_row = doc.find("tr", data_token="1")
    assert token_row is not None
    created_cell = token_row.find_all("td")[2]

    assert doc.by_id("done").text == "Token revoked."
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", created_cell.text)


async def test_settings_member_messages(
    client: Client, services: Services, tenant_a: Tenant
) -> None:
    admin = await sign_in(client, services, tenant_a, "admin")
    user_id, email = await create_member(services, None, None)
    base = f"/projects/{tenant_a.key}/settings"

    added = await client.post(
        f"{base}/members", data=admin.form(email=email, role="viewer"), allow_redirects=False
    )
    removed = await client.post(
        f"{base}/members/{user_id}/remove", data=admin.form(), allow_redirects=False
    )
    added_doc = parse(await (await client.get(added.headers["Location"])).text())
    removed_doc = parse(await (await client.get(removed.headers["Location"])).text())

    assert added.headers["Location"] == f"{base}?done=member-saved"
    assert added_doc.by_id("done").text == "Member saved."
    assert removed.headers["Location"] == f"{base}?done=member-removed"
    assert removed_doc.by_id("done").text == "Member removed."


async def test_settings_bad_done_value(
    client: Client, services: Services, tenant_a: Tenant
) -> None:
    await sign_in(client, services, tenant_a, "admin")

    response = await client.get(f"/projects/{tenant_a.key}/settings?done=<x>")
    message = parse(await response.text()).find("p", class_="error-message")

    assert response.status == 422
    assert message is not None
    assert "invalid done value '<x>'" in message.text
