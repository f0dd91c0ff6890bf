"""The report pages, parsed as HTML, over known runs on SQLite and PostgreSQL."""

from __future__ import annotations

from tests.conftest import Tenant
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
