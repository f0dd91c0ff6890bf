"""The SVG charts: self-contained, escaped, and readable without colour."""

from __future__ import annotations

import datetime as dt
import math
import re
from html.parser import HTMLParser

import pytest

from ingest_server.web.charts import (
    CHAR_WIDTH,
    DASHES,
    LABEL_FONT_SIZE,
    bar_chart,
    line_chart,
    run_labels,
)

SVG_NAMESPACE = "http://www.w3.org/2000/svg"


class Tree(HTMLParser):
    """Record every start tag with its attributes, and the text inside each tag name."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: dict[str, list[str]] = {}
        self._open: list[str] = []
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))
        self._open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in self._open:
            while self._open.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if self._open:
            self.text.setdefault(self._open[-1], []).append(data)

    def named(self, tag: str) -> list[dict[str, str]]:
        return [attrs for name, attrs in self.tags if name == tag]


def sample_line() -> str:
    return str(
        line_chart(
            "Pass rate",
            ["run 1", "run 2", "run 3"],
            {"pass rate": [0.5, None, 1.0], "failures": [4.0, 2.0, 0.0]},
            "ratio",
        )
    )


def test_line_chart_has_no_script():
    tree = Tree(sample_line())

    assert tree.named("script") == []


def test_line_chart_loads_nothing_from_the_web():
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", sample_line()))

    assert urls == {SVG_NAMESPACE}


def test_line_chart_has_title_and_description():
    tree = Tree(sample_line())

    # The first title is the chart's. pygal adds one per axis value after it.
    assert tree.text["title"][0] == "Pass rate"
    description = " ".join(tree.text["desc"])
    assert "3 points from run 1 to run 2" not in description
    assert "3 points from run 1 to run 3" in description
    assert "pass rate (solid line, circle markers): minimum 0.5, maximum 1, last 1." in (
        description
    )


def test_line_chart_svg_aria_labels():
    tree = Tree(sample_line())

    (svg,) = tree.named("svg")
    assert svg["role"] == "img"
    labelled_by = svg["aria-labelledby"].split()
    ids = {attrs.get("id") for _, attrs in tree.tags}
    assert all(part in ids for part in labelled_by)
    assert len(labelled_by) == 2


def test_line_chart_series_differ_by_dash_pattern():
    markup = sample_line()

    rules = dict(re.findall(r"\.serie-(\d+)\{([^}]*)\}", markup))

    assert f"stroke-dasharray:{DASHES[0]}" in rules["0"]
    assert f"stroke-dasharray:{DASHES[1]}" in rules["1"]
    assert DASHES[0] != DASHES[1]


def test_line_chart_series_differ_by_marker_shape():
    tree = Tree(sample_line())

    # Two points of the first series (one value is missing) are circles;
    # three points of the second are squares. Each legend key adds one.
    assert len([a for a in tree.named("circle") if "dot" in a.get("class", "")]) == 2
    assert len([a for a in tree.named("rect") if "dot" in a.get("class", "")]) == 3


def test_line_chart_with_many_points_draws_no_markers():
    labels = [f"run {number}" for number in range(200)]
    markup = str(line_chart("Long", labels, {"a": [1.0] * 200}, "s"))
    tree = Tree(markup)

    assert [a for a in tree.named("circle") if "dot" in a.get("class", "")] == []
    assert "solid line)" in " ".join(tree.text["desc"])


def test_chart_data_table_lists_every_value():
    tree = Tree(sample_line())

    assert tree.text["summary"] == ["Data of Pass rate"]
    assert tree.text["caption"] == ["Pass rate (ratio)"]
    assert tree.text["td"] == ["0.5", "4", "\N{EN DASH}", "2", "1", "0"]


def test_chart_escapes_labels_titles_and_series_names():
    markup = str(
        line_chart(
            "<script>alert('title')</script>",
            ["<script>alert('label')</script>"],
            {"<img src=x onerror=alert(1)>": [1.0]},
            "<b>unit</b>",
        )
    )
    tree = Tree(markup)

    assert tree.named("script") == []
    assert tree.named("img") == []
    assert tree.named("b") == []
    assert "<script>alert('label')</script>" in tree.text["th"]
    assert tree.text["title"][0] == "<script>alert('title')</script>"


def test_bar_chart_fills_series_with_distinct_patterns():
    markup = str(bar_chart("Counts", ["a", "b"], {"one": [1, 2], "two": [2, 1]}, "n"))
    tree = Tree(markup)

    (pattern,) = tree.named("pattern")
    assert pattern["id"].endswith("-fill-1")
    hatched = [a for a in tree.named("rect") if f"url(#{pattern['id']})" in a.get("style", "")]
    # Two bars of the second series and its legend key.
    assert len(hatched) == 3
    assert tree.named("script") == []


def test_chart_without_data_still_renders():
    tree = Tree(str(line_chart("Nothing", [], {"a": []}, "s")))

    assert tree.text["desc"] == ["No data."]
    assert tree.named("tr") == [{}]


def test_run_labels_minutes_when_distinct() -> None:
    times = [dt.datetime(2026, 12, 5, 0, minute, 7, tzinfo=dt.UTC) for minute in (38, 39)]

    assert run_labels(times) == ["12-05 00:38", "12-05 00:39"]


def test_run_labels_seconds_within_one_minute() -> None:
    times = [dt.datetime(2026, 12, 5, 0, 38, second, tzinfo=dt.UTC) for second in (1, 9, 30)]

    assert run_labels(times) == ["12-05 00:38:01", "12-05 00:38:09", "12-05 00:38:30"]


def test_run_labels_ordinals_within_one_second() -> None:
    start = dt.datetime(2026, 12, 5, 0, 38, 1, tzinfo=dt.UTC)
    times = [start, start + dt.timedelta(milliseconds=200)]

    assert run_labels(times) == ["#1 · 12-05 00:38:01", "#2 · 12-05 00:38:01"]


def test_line_chart_makes_equal_labels_distinct() -> None:
    svg = str(line_chart("T", ["12-05 00:38"] * 3, {"a": [1.0, 2.0, 3.0]}, "s"))

    x_labels = x_axis_labels(svg)
    row_headers = Tree(svg).text["th"]

    assert [text for text, _ in x_labels] == [
        "#1 · 12-05 00:38",
        "#2 · 12-05 00:38",
        "#3 · 12-05 00:38",
    ]
    assert "#3 · 12-05 00:38" in row_headers


def x_axis_labels(svg: str) -> list[tuple[str, float]]:
    """Return each x-axis label's text and its right end in SVG units, estimated from its length.

    The estimate uses the chart's own font size and a character width of 0.7
    of it, wider than the chart module assumes, so the check stays on the safe side.
    """
    plot_left = float(re.search(r'transform="translate\((\d+(?:\.\d+)?), ', svg).group(1))
    axis = svg[svg.index('class="axis x') :]
    axis = axis[: axis.index('class="series')]
    labels = []
    for match in re.finditer(
        r'<text x="([\d.]+)"[^>]*?( transform="rotate\((\d+))?[^>]*>([^<]*)</text>', axis
    ):
        x, rotated, angle, text = (
            float(match.group(1)),
            match.group(2),
            match.group(3),
            match.group(4),
        )
        width = len(text) * LABEL_FONT_SIZE * 0.7
        if rotated:
            right = plot_left + x + width * math.cos(math.radians(float(angle)))
        else:
            right = plot_left + x + width / 2
        labels.append((text, right))
    return labels


@pytest.mark.parametrize("count", [2, 3, 4, 5, 12, 50])
def test_line_chart_last_x_label_inside_svg(count: int) -> None:
    labels = [f"#{n} · 12-05 00:38:{n % 60:02d}" for n in range(1, count + 1)]
    svg = str(line_chart("T", labels, {"a": [1.0] * count}, "s"))
    width = float(re.search(r'viewBox="0 0 ([\d.]+) ', svg).group(1))

    text, right = x_axis_labels(svg)[-1]

    assert text == labels[-1]
    assert right <= width
    assert CHAR_WIDTH < 0.7
