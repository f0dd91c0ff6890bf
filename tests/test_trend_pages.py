"""The flaky, slow and trends pages: structure parsed from the HTML, on SQLite and PostgreSQL."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest

from ingest_server.services.container import Services
from tests.conftest import Tenant, sign_in
from tests.run_data import Client, Reporter, attempt, failure

SCRIPT_NAME = "t::<script>alert(1)</script>"


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""
    children: list[Element] = field(default_factory=list)

    def find_all(self, tag: str, **attrs: str) -> list[Element]:
        found = []
        for child in self.children:
            if child.tag == tag and all(child.attrs.get(k) == v for k, v in attrs.items()):
                found.append(child)
            found.extend(child.find_all(tag, **attrs))
        return found

    def find(self, tag: str, **attrs: str) -> Element:
        (element,) = self.find_all(tag, **attrs)
        return element

    def first(self, tag: str, **attrs: str) -> Element:
        return self.find_all(tag, **attrs)[0]

    def has_class(self, name: str) -> bool:
        return name in self.attrs.get("class", "").split()

    @property
    def full_text(self) -> str:
        return " ".join(" ".join([self.text, *(c.full_text for c in self.children)]).split())


VOID = {"input", "br", "meta", "link", "img", "hr", "option", "path", "circle", "rect"}


class Page(HTMLParser):
    """Parse a page into a tree of elements (enough for this product's templates)."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("root", {})
        self._stack = [self.root]
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self._stack[-1].children.append(element)
        if tag not in VOID:
            self._stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._stack[-1].children.append(Element(tag, {n: v or "" for n, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self._stack) - 1, 0, -1):
            if self._stack[depth].tag == tag:
                del self._stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self._stack[-1].text += data


async def get_page(
    client: Client, tenant: Tenant, path: str, status: int = 200, **query: str
) -> Element:
    response = await client.get(
        f"/projects/{tenant.key}/{path}", params=query, headers=tenant.auth("viewer")
    )
    html = await response.text()
    assert response.status == status, html
    assert response.content_type == "text/html"
    return Page(html).root


async def report_flaky(reporter: Reporter) -> list[str]:
    runs = []
    for number, outcome in enumerate(("passed", "failed", "passed", "failed")):
        items = [attempt("t::steady")]
        for key in ("t::flips", SCRIPT_NAME):
            items.append(attempt(key) if outcome == "passed" else failure(key, "E"))
        runs.append(
            await reporter.run(
                items, started=number * 100.0, collected=["t::steady", "t::flips", SCRIPT_NAME]
            )
        )
    return runs


async def test_flaky_page_lists_tests_with_links(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    runs = await report_flaky(reporter)

    page = await get_page(client, tenant_a, "flaky")
    table = page.find("table", **{"class": "flaky-tests"})
    rows = table.find("tbody").find_all("tr")

    assert len(rows) == 2
    first = rows[0]
    link = first.first("td").find("a")
    assert link.attrs["href"] == f"/projects/{tenant_a.key}/cases/{first.attrs['data-case']}"
    assert first.find("td", **{"data-field": "flip_rate"}).full_text == "100.0 %"
    assert first.find("td", **{"data-field": "flips"}).full_text == "3"
    evidence = [item.attrs["data-run"] for item in first.find_all("li")]
    assert evidence == list(reversed(runs))
    run_links = [a.attrs["href"] for item in first.find_all("li") for a in item.find_all("a")]
    assert run_links == [f"/projects/{tenant_a.key}/runs/{run}" for run in reversed(runs)]


async def test_flaky_page_shows_window_and_thresholds(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_flaky(reporter)

    page = await get_page(client, tenant_a, "flaky", window="3", min_flip_rate="0.5")
    settings = page.find("dl", id="report-settings")
    values = dict(
        zip(
            [dt.full_text for dt in settings.find_all("dt")],
            [dd.full_text for dd in settings.find_all("dd")],
            strict=True,
        )
    )

    assert values["Branch"] == "main"
    assert values["Window"].startswith("the newest 3 finished runs; 3 read")
    assert values["Minimum flip rate"] == "0.5, that is 50.0 % of the chances to flip"
    assert values["Minimum runs"] == "3"
    assert values["Minimum flips"] == "2"
    form = page.find("form", **{"class": "filters"})
    inputs = {i.attrs["name"]: i.attrs["value"] for i in form.find_all("input")}
    assert inputs == {
        "branch": "main",
        "window": "3",
        "min_flip_rate": "0.5",
        "min_runs": "3",
        "min_flips": "2",
        "limit": "100",
    }


async def test_flaky_page_csv_link(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_flaky(reporter)

    page = await get_page(client, tenant_a, "flaky")
    (link,) = [a for a in page.find_all("a") if a.full_text == "Export CSV"]
    url = urllib.parse.urlsplit(link.attrs["href"])
    query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
    response = await client.get(link.attrs["href"], headers=tenant_a.auth("viewer"))

    assert url.path == f"/api/v1/projects/{tenant_a.key}/flaky"
    assert query["format"] == ["csv"]
    assert query["branch"] == ["main"]
    assert response.status == 200
    assert response.content_type == "text/csv"


async def test_flaky_page_escapes_test_names(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_flaky(reporter)

    page = await get_page(client, tenant_a, "flaky")
    names = [row.first("td").full_text for row in page.find("tbody").find_all("tr")]

    assert SCRIPT_NAME in names
    assert page.find_all("script") == []


@pytest.mark.parametrize(
    ("path", "query", "message"),
    [
        ("flaky", {"window": "1"}, "invalid window 1: use an integer from 2 to 200"),
        ("flaky", {"min_flip_rate": "lots"}, "invalid min_flip_rate 'lots': use a number"),
        ("slow", {"recent": "200"}, "invalid recent 200: use an integer from 1 to 199"),
        ("trends", {"window": "9999"}, "invalid window 9999: use an integer from 1 to 500"),
        ("trends", {"colour": "red"}, "unknown query parameter 'colour'"),
    ],
)
async def test_report_page_bad_filter_shows_form_again(
    client: Client, tenant_a: Tenant, path: str, query: dict[str, str], message: str
) -> None:
    page = await get_page(client, tenant_a, path, status=422, **query)

    (flash,) = [p for p in page.find_all("p") if p.has_class("flash-error")]
    assert message in flash.full_text
    form = page.find("form", **{"class": "filters"})
    values = {i.attrs["name"]: i.attrs["value"] for i in form.find_all("input")}
    for name, value in query.items():
        if name in values:
            assert values[name] == value
    assert page.find_all("table") == []


async def test_slow_page_shows_numbers(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    durations = [1.0, 1.0, 1.0, 3.0, 3.0]
    for number, duration in enumerate(durations):
        await reporter.run([attempt("t::slower", duration=duration)], started=number * 100.0)

    page = await get_page(client, tenant_a, "slow", window="5", recent="2")
    regression = page.find("table", **{"class": "regressions"}).find("tbody").find("tr")
    slowest = page.find("table", **{"class": "slowest"}).find("tbody").find("tr")

    assert regression.find("td", **{"data-field": "recent_median"}).full_text == "3.0 s"
    assert regression.find("td", **{"data-field": "baseline_median"}).full_text == "1.0 s"
    ratio = regression.find("td", **{"data-field": "ratio"}).full_text
    assert ratio == "3.00\N{MULTIPLICATION SIGN}"
    assert regression.find("td", **{"data-field": "delta"}).full_text == "+2.0 s"
    assert slowest.find("td", **{"data-field": "median"}).full_text == "1.0 s"
    assert slowest.find("td", **{"data-field": "p90"}).full_text == "3.0 s"
    assert slowest.find("td", **{"data-field": "runs"}).full_text == "5"


async def test_trends_page_charts_and_table(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    runs = [
        await reporter.run([attempt("t::a"), failure("t::b", "E")], started=0.0),
        await reporter.run([attempt("t::a"), attempt("t::b")], started=100.0),
    ]

    page = await get_page(client, tenant_a, "trends")
    figures = page.find_all("figure")
    rows = page.find("table", **{"class": "trend-runs"}).find("tbody").find_all("tr")

    assert len(figures) == 3
    assert all(figure.find_all("svg") for figure in figures)
    assert page.find_all("script") == []
    assert [row.attrs["data-run"] for row in rows] == list(reversed(runs))
    assert rows[1].find("td", **{"data-field": "pass_rate"}).full_text == "50.0 %"
    assert rows[0].find("td", **{"data-field": "failures"}).full_text == "0"


async def test_trends_page_empty_project(client: Client, tenant_a: Tenant) -> None:
    page = await get_page(client, tenant_a, "trends")

    assert "No settled runs in this window." in page.full_text
    assert page.find_all("figure") == []


@pytest.mark.parametrize("path", ["flaky", "slow", "trends"])
async def test_report_pages_hidden_from_other_project(
    client: Client, tenant_a: Tenant, tenant_b: Tenant, path: str
) -> None:
    response = await client.get(
        f"/projects/{tenant_b.key}/{path}", headers=tenant_a.auth("viewer")
    )

    assert response.status == 404
    assert response.content_type == "text/html"


@pytest.mark.parametrize("path", ["flaky", "slow", "trends"])
async def test_report_pages_send_signed_out_to_sign_in(
    client: Client, tenant_a: Tenant, path: str
) -> None:
    response = await client.get(f"/projects/{tenant_a.key}/{path}", allow_redirects=False)

    assert response.status == 303
    assert response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize("path", ["flaky", "slow", "trends"])
async def test_report_pages_for_signed_in_member(
    client: Client, services: Services, tenant_a: Tenant, tenant_b: Tenant, path: str
) -> None:
    await sign_in(client, services, tenant_a, role="viewer")

    own = await client.get(f"/projects/{tenant_a.key}/{path}")
    other = await client.get(f"/projects/{tenant_b.key}/{path}")
    export = await client.get(f"/api/v1/projects/{tenant_a.key}/{path}?format=csv")

    assert own.status == 200
    assert other.status == 404
    assert export.status == 200


async def test_flaky_page_says_evidence_is_flips_only(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_flaky(reporter)

    page = await get_page(client, tenant_a, "flaky")
    headers = [th.full_text for th in page.find("table").find("thead").find_all("th")]

    assert "Evidence: flips and reruns" in headers
    assert "Runs seen" in headers


async def test_report_page_hint_names_default_branch(client: Client, tenant_a: Tenant) -> None:
    page = await get_page(client, tenant_a, "trends")

    hint = page.find("p", id="branch-hint").full_text

    assert "the branch of the newest settled run" in hint
    assert "all branches" in hint


@pytest.mark.parametrize("path", ["flaky", "slow", "trends"])
async def test_report_page_error_keeps_default_branch(
    client: Client, tenant_a: Tenant, path: str
) -> None:
    reporter = Reporter(client, tenant_a)
    await reporter.run([attempt("t::a")], started=0.0, branch="release")

    page = await get_page(client, tenant_a, path, status=422, window="9999")
    form = page.find("form", **{"class": "filters"})
    values = {i.attrs["name"]: i.attrs["value"] for i in form.find_all("input")}

    assert values["branch"] == "release"
    assert values["window"] == "9999"


async def test_report_page_error_keeps_sent_branch(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await reporter.run([attempt("t::a")], started=0.0, branch="release")

    page = await get_page(client, tenant_a, "slow", status=422, branch="", window="1")
    form = page.find("form", **{"class": "filters"})
    values = {i.attrs["name"]: i.attrs["value"] for i in form.find_all("input")}

    assert values["branch"] == ""


async def test_slow_page_explains_too_few_runs(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    for number, duration in enumerate([1.0, 1.0, 3.0]):
        await reporter.run([attempt("t::slower", duration=duration)], started=number * 100.0)

    page = await get_page(client, tenant_a, "slow")
    note = page.find("p", id="regressions-note").full_text
    empty = [p.full_text for p in page.find_all("p") if p.has_class("empty")]
    form = page.find("form", **{"class": "filters"})
    recent = form.find("input", name="recent")

    assert "the recent part has 1 and the baseline 2" in note
    assert "No test got slower in this window." not in empty
    assert page.find_all("table", **{"class": "regressions"}) == []
    assert recent.attrs["value"] == ""
    assert "required" not in recent.attrs


async def test_slow_page_blank_recent_uses_default(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    for number, duration in enumerate([1.0, 1.0, 3.0, 3.0]):
        await reporter.run([attempt("t::slower", duration=duration)], started=number * 100.0)

    page = await get_page(client, tenant_a, "slow", recent="")
    settings = page.find("dl", id="report-settings")
    values = dict(
        zip(
            [dt.full_text for dt in settings.find_all("dt")],
            [dd.full_text for dd in settings.find_all("dd")],
            strict=True,
        )
    )

    assert values["Recent runs"].startswith("the newest 2 runs read, against the 2 before them")
    assert page.find_all("table", **{"class": "regressions"}) != []
