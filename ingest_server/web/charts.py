"""Server-side SVG charts for the report pages, drawn with pygal.

Every chart is a ``<figure>`` containing an inline SVG and a ``<details>`` table
of the same numbers. The SVG needs no JavaScript and loads nothing: pygal's
tooltip scripts, which point at a CDN by default, are removed. Series differ
by dash pattern and marker shape (lines) or fill pattern (bars) as well as by
colour, so the chart reads without colour. Titles, labels and series names
are escaped: pygal sets them as element text, which the XML serializer
escapes, and the table is built with markupsafe.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pygal  # type: ignore[import-untyped]  # pygal ships no type information
from markupsafe import Markup, escape
from pygal.etree import etree as svg_etree  # type: ignore[import-untyped]
from pygal.style import Style  # type: ignore[import-untyped]

Series = Mapping[str, Sequence[float | None]]

# Okabe and Ito's palette, chosen to stay distinct under the common kinds of
# colour blindness.
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
DASHES = ("none", "8,4", "2,3", "10,3,2,3", "4,4", "1,6", "12,6")
MARKERS = ("circle", "square", "triangle", "diamond")
# Bar fills: the first series is solid, the others are hatched.
HATCHES = ("solid", "diagonal", "dots", "cross", "horizontal", "vertical", "backslash")
MAX_X_LABELS = 10
# Above this many points a line chart draws no markers. The markers would
# overlap, and pygal spends most of its time on them. For 200 points a chart
# took 18 ms with markers and 5 ms without. That is an estimate, measured
# once with time.perf_counter on a 2-core AMD EPYC. Dash patterns still tell
# the lines apart.
MAX_MARKED_POINTS = 60
MARKER_RADIUS = 3.5
# The SVG's own size. The page scales it to the figure's width (60rem in
# style.css, 960 px at the default font size), so text is drawn at its size.
WIDTH = 960
HEIGHT = 360
LABEL_FONT_SIZE = 12
X_LABEL_ROTATION = 20
# An estimate of a character's width as a fraction of the font size. pygal
# draws text without measuring it, so the right margin is sized with this
# generous average for the system sans-serif fonts.
CHAR_WIDTH = 0.62

_STYLE = Style(
    background="transparent",
    plot_background="#ffffff",
    foreground="#1d232b",
    foreground_strong="#1d232b",
    foreground_subtle="#5b6573",
    colors=COLORS,
    font_family="system-ui, sans-serif",
    label_font_size=LABEL_FONT_SIZE,
    major_label_font_size=LABEL_FONT_SIZE,
    legend_font_size=13,
    title_font_size=15,
    # Solid light guides, so that only data lines are dashed.
    guide_stroke_color="#d8dde4",
    major_guide_stroke_color="#b8c0ca",
    guide_stroke_dasharray="none",
    major_guide_stroke_dasharray="none",
)


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Series,
    y_title: str,
    *,
    y_range: tuple[float, float] | None = None,
) -> Markup:
    """Return a line chart, one dash pattern and marker shape per series, with its data table.

    Equal labels get their position in front, see distinct_labels(). The y
    axis starts at zero unless y_range sets both ends, such as (0, 100) for
    percentages.
    """
    labels = distinct_labels(labels)
    marked = len(labels) <= MAX_MARKED_POINTS
    chart = pygal.Line(**_config(title, labels, y_title), show_dots=marked, range=y_range)
    for index, (name, values) in enumerate(series.items()):
        chart.add(name, list(values), stroke_style={"width": 2, "dasharray": _dash(index)})

    def mark(root: Any, chart_id: str) -> None:
        _mark_lines(root, marked)

    return _figure(chart, title, labels, series, y_title, mark, marked=marked)


def bar_chart(title: str, labels: Sequence[str], series: Series, y_title: str) -> Markup:
    """Return a bar chart with one fill pattern per series, and its data table."""
    labels = distinct_labels(labels)
    chart = pygal.Bar(**_config(title, labels, y_title))
    for name, values in series.items():
        chart.add(name, list(values))
    return _figure(chart, title, labels, series, y_title, _hatch_bars, marked=False)


def run_labels(times: Sequence[dt.datetime]) -> list[str]:
    """Return x labels for runs started at times: month, day, hours and minutes.

    Seconds are added when two runs share a minute. Labels that are still
    equal get the run's position, oldest first, in front, as in "#3 · 12-05 00:38".
    """
    labels = [time.strftime("%m-%d %H:%M") for time in times]
    if len(set(labels)) < len(labels):
        labels = [time.strftime("%m-%d %H:%M:%S") for time in times]
    return distinct_labels(labels)


def distinct_labels(labels: Sequence[str]) -> list[str]:
    """Return labels unchanged when they differ, else each prefixed with its position from 1."""
    if len(set(labels)) == len(labels):
        return list(labels)
    return [f"#{position} · {label}" for position, label in enumerate(labels, start=1)]


def _right_margin(labels: Sequence[str], rotation: int) -> int:
    """Return the right margin that keeps the last x label inside the SVG.

    pygal centres an unrotated label on its point, so half of it passes the
    plot's right edge. A rotated label starts at its point and runs right.
    """
    if not labels:
        return 20
    width = len(labels[-1]) * LABEL_FONT_SIZE * CHAR_WIDTH
    overhang = width * math.cos(math.radians(rotation)) if rotation else width / 2
    return max(20, math.ceil(overhang) + 8)


def _config(title: str, labels: Sequence[str], y_title: str) -> dict[str, Any]:
    label_count = len(labels)
    rotation = X_LABEL_ROTATION if label_count > 4 else 0
    return {
        "title": title,
        "x_labels": list(labels),
        "y_title": y_title,
        "style": _STYLE,
        # No script at all: the default loads the tooltip script from a CDN.
        "js": [],
        "disable_xml_declaration": True,
        "width": WIDTH,
        "height": HEIGHT,
        "legend_at_bottom": True,
        # -1 turns truncation off: a run's label is short, and a cut one is ambiguous.
        "truncate_label": -1,
        "x_label_rotation": rotation,
        "margin_right": _right_margin(labels, rotation),
        # Long windows would print a label under every point.
        "show_minor_x_labels": label_count <= MAX_X_LABELS,
        "x_labels_major_count": min(label_count, MAX_X_LABELS),
        "print_values": False,
        # An axis from zero keeps small changes from looking like big ones.
        "include_x_axis": True,
        "no_data_text": "No data",
    }


def _dash(index: int) -> str:
    return DASHES[index % len(DASHES)]


def _figure(
    chart: Any,
    title: str,
    labels: Sequence[str],
    series: Series,
    y_title: str,
    mark: Callable[[Any, str], None],
    marked: bool,
) -> Markup:
    chart_id = f"chart-{chart.uuid}"

    def finish(root: Any) -> Any:
        _strip_scripts(root)
        mark(root, chart_id)
        _describe(root, chart_id, _summary_text(labels, series, y_title, marked))
        return root

    chart.add_xml_filter(finish)
    svg = chart.render(is_unicode=True)
    table = _data_table(title, labels, series, y_title)
    # pygal's serializer escaped every text and attribute of the SVG.
    return Markup(
        '<figure class="chart">{svg}<details><summary>{summary}</summary>{table}</details>'
        "</figure>"
    ).format(svg=Markup(svg), summary=f"Data of {title}", table=table)  # noqa: S704


def _children(root: Any) -> list[tuple[Any, Any]]:
    """Return every (parent, child) pair under root, depth first."""
    pairs = []
    stack = [root]
    while stack:
        parent = stack.pop()
        for child in list(parent):
            pairs.append((parent, child))
            stack.append(child)
    return pairs


def _classes(element: Any) -> set[str]:
    return set((element.get("class") or "").split())


def _strip_scripts(root: Any) -> None:
    """Remove scripts, pygal's comments (they carry its web addresses) and the tooltip layer."""
    for parent, child in _children(root):
        tag = child.tag
        if not isinstance(tag, str) or tag == "script" or "tooltip-overlay" in _classes(child):
            parent.remove(child)
        elif tag == "desc" and _classes(child) & {"x", "y"}:
            # Tooltip positions in pixels, which read as noise in a screen reader.
            parent.remove(child)


def _describe(root: Any, chart_id: str, summary: str) -> None:
    root.set("role", "img")
    root.set("aria-labelledby", f"{chart_id}-title {chart_id}-desc")
    title_node = root.find("title")
    if title_node is not None:
        title_node.set("id", f"{chart_id}-title")
    desc = svg_etree.Element("desc", {"id": f"{chart_id}-desc"})
    desc.text = summary
    root.insert(list(root).index(title_node) + 1 if title_node is not None else 0, desc)


def _summary_text(labels: Sequence[str], series: Series, y_title: str, marked: bool) -> str:
    if not labels:
        return "No data."
    parts = [f"{len(labels)} points from {labels[0]} to {labels[-1]}, {y_title}."]
    for index, (name, values) in enumerate(series.items()):
        known = [value for value in values if value is not None]
        style = _style_words(index, marked)
        if not known:
            parts.append(f"{name} ({style}): no values.")
            continue
        parts.append(
            f"{name} ({style}): minimum {_number(min(known))},"
            f" maximum {_number(max(known))}, last {_number(values[-1])}."
        )
    return " ".join(parts)


def _style_words(index: int, marked: bool) -> str:
    dash = _dash(index)
    line = "solid line" if dash == "none" else f"dash pattern {dash}"
    if not marked:
        return line
    return f"{line}, {MARKERS[index % len(MARKERS)]} markers"


def _number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "\N{EN DASH}"
    return f"{value:.4g}"


def _series_groups(root: Any, layer: str) -> list[tuple[int, Any]]:
    """Return (series index, group) for each series group inside plot groups of class layer."""
    groups = []
    for _parent, node in _children(root):
        if node.tag != "g" or layer not in _classes(node):
            continue
        for group in node:
            for name in _classes(group):
                if name.startswith("serie-"):
                    groups.append((int(name.removeprefix("serie-")), group))
    return groups


def _mark_lines(root: Any, marked: bool) -> None:
    """Replace pygal's round dots with one marker shape per series, and redraw the legend keys."""
    for index, group in _series_groups(root, "overlay"):
        for dots in group.findall("g"):
            for dot in dots.findall("circle"):
                x, y = float(dot.get("cx")), float(dot.get("cy"))
                position = list(dots).index(dot)
                dots.remove(dot)
                marker = _marker(index, x, y, MARKER_RADIUS, dot.get("class") or "dot")
                dots.insert(position, marker)
    for index, legend, key in _legends(root):
        _replace_legend_key(index, legend, key, marked)


def _hatch_bars(root: Any, chart_id: str) -> None:
    """Fill each series' bars with its own pattern, defined once per chart."""
    defs = root.find("defs")
    series_count = 1 + max((index for index, _ in _series_groups(root, "plot")), default=0)
    for index in range(series_count):
        pattern = _pattern(f"{chart_id}-fill-{index}", index)
        if pattern is not None:
            defs.append(pattern)
    for index, group in _series_groups(root, "plot"):
        for _parent, node in _children(group):
            if node.tag == "rect":
                node.set("style", _fill_style(chart_id, index))
    for index, _legend, key in _legends(root):
        key.set("style", _fill_style(chart_id, index) + ";stroke:#1d232b;stroke-width:1")


def _fill_style(chart_id: str, index: int) -> str:
    if HATCHES[index % len(HATCHES)] == "solid":
        return f"fill:{COLORS[index % len(COLORS)]}"
    return f"fill:url(#{chart_id}-fill-{index})"


def _pattern(pattern_id: str, index: int) -> Any | None:
    kind = HATCHES[index % len(HATCHES)]
    if kind == "solid":
        return None
    color = COLORS[index % len(COLORS)]
    pattern = svg_etree.Element(
        "pattern",
        {"id": pattern_id, "width": "8", "height": "8", "patternUnits": "userSpaceOnUse"},
    )
    svg_etree.SubElement(
        pattern, "rect", {"width": "8", "height": "8", "style": f"fill:{color};opacity:0.25"}
    )
    stroke = f"stroke:{color};stroke-width:2"
    for path in _hatch_paths(kind):
        svg_etree.SubElement(pattern, "path", {"d": path, "style": stroke})
    if kind == "dots":
        svg_etree.SubElement(
            pattern, "circle", {"cx": "4", "cy": "4", "r": "2", "style": f"fill:{color}"}
        )
    return pattern


def _hatch_paths(kind: str) -> tuple[str, ...]:
    paths = {
        "diagonal": ("M0,8 L8,0", "M-2,2 L2,-2", "M6,10 L10,6"),
        "cross": ("M0,4 H8", "M4,0 V8"),
        "horizontal": ("M0,4 H8",),
        "vertical": ("M4,0 V8",),
        "backslash": ("M0,0 L8,8", "M-2,6 L2,10", "M6,-2 L10,2"),
    }
    return paths.get(kind, ())


def _legends(root: Any) -> list[tuple[int, Any, Any]]:
    """Return (series index, legend group, key rectangle) for every legend entry."""
    keys = []
    for _parent, node in _children(root):
        if "legend" not in _classes(node):
            continue
        for child in node:
            if child.tag != "rect":
                continue
            for name in _classes(child):
                if name.startswith("color-"):
                    keys.append((int(name.removeprefix("color-")), node, child))
    return keys


def _replace_legend_key(index: int, legend: Any, key: Any, marked: bool) -> None:
    """Draw the legend key as a short stroke in the series' dash pattern with its marker."""
    x, y = float(key.get("x")), float(key.get("y"))
    width, height = float(key.get("width")), float(key.get("height"))
    # Hide pygal's colour square. The stroke below shows the dash pattern instead.
    key.set("width", "0")
    key.set("height", "0")
    color = COLORS[index % len(COLORS)]
    middle = y + height / 2
    stroke = svg_etree.Element(
        "path",
        {
            "d": f"M{x - 14:.1f},{middle:.1f} h{width + 14:.1f}",
            "style": f"fill:none;stroke:{color};stroke-width:2;stroke-dasharray:{_dash(index)}",
        },
    )
    legend.append(stroke)
    if marked:
        marker = _marker(index, x + (width - 14) / 2, middle, MARKER_RADIUS, "legend-marker")
        marker.set("style", f"fill:{color};stroke:{color}")
        legend.append(marker)


def _marker(index: int, x: float, y: float, radius: float, css_class: str) -> Any:
    shape = MARKERS[index % len(MARKERS)]
    attributes = {"class": css_class}
    if shape == "circle":
        return svg_etree.Element(
            "circle", {**attributes, "cx": f"{x:.2f}", "cy": f"{y:.2f}", "r": f"{radius:.1f}"}
        )
    if shape == "square":
        side = radius * 1.8
        return svg_etree.Element(
            "rect",
            {
                **attributes,
                "x": f"{x - side / 2:.2f}",
                "y": f"{y - side / 2:.2f}",
                "width": f"{side:.2f}",
                "height": f"{side:.2f}",
            },
        )
    points = _polygon_points(shape, x, y, radius * 1.3)
    return svg_etree.Element("polygon", {**attributes, "points": points})


def _polygon_points(shape: str, x: float, y: float, radius: float) -> str:
    if shape == "triangle":
        corners = [(x, y - radius), (x + radius, y + radius * 0.8), (x - radius, y + radius * 0.8)]
    else:
        corners = [(x, y - radius), (x + radius, y), (x, y + radius), (x - radius, y)]
    return " ".join(f"{cx:.2f},{cy:.2f}" for cx, cy in corners)


def _data_table(title: str, labels: Sequence[str], series: Series, y_title: str) -> Markup:
    # escape() and plain joins rather than Markup.format per cell, because a
    # 200-row table is built for every chart and Markup.format is slow.
    header = "".join(f'<th scope="col" class="num">{escape(name)}</th>' for name in series)
    columns = list(series.values())
    rows = []
    for position, label in enumerate(labels):
        cells = "".join(
            f'<td class="num">{escape(_number(_value_at(values, position)))}</td>'
            for values in columns
        )
        rows.append(f'<tr><th scope="row">{escape(label)}</th>{cells}</tr>')
    caption = escape(f"{title} ({y_title})")
    return Markup(  # noqa: S704 (every piece of text above went through escape)
        f'<table><caption>{caption}</caption><thead><tr><th scope="col">Point</th>{header}'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _value_at(values: Sequence[float | None], position: int) -> float | None:
    return values[position] if position < len(values) else None


__all__ = ["bar_chart", "distinct_labels", "line_chart", "run_labels"]
