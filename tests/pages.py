"""A small HTML reader for page tests, built on the standard library's html.parser.

``parse(html)`` returns the root ``Element``. Its methods find elements by
tag, id, class or any attribute, read a table's rows as lists of cell
texts and collect link targets, so tests need not match strings against
markup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element] = field(default_factory=list)
    parts: list[str | Element] = field(default_factory=list)

    @property
    def text(self) -> str:
        """Return the element's text content with whitespace collapsed."""
        return " ".join(self._raw_text().split())

    def _raw_text(self) -> str:
        return "".join(p if isinstance(p, str) else f" {p._raw_text()} " for p in self.parts)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def iter(self) -> list[Element]:
        """Return this element and all its descendants in document order."""
        found = [self]
        for child in self.children:
            found.extend(child.iter())
        return found

    def find_all(
        self, tag: str | None = None, *, class_: str | None = None, **attrs: str | None
    ) -> list[Element]:
        """Return descendants matching tag, class and attributes (``data_x`` is ``data-x``).

        An attribute given as None only has to be present.
        """
        wanted = {name.replace("_", "-"): value for name, value in attrs.items()}
        return [
            element
            for element in self.iter()[1:]
            if (tag is None or element.tag == tag)
            and (class_ is None or class_ in element.classes)
            and all(
                name in element.attrs and (value is None or element.attrs[name] == value)
                for name, value in wanted.items()
            )
        ]

    def find(self, tag: str | None = None, **kwargs: str | None) -> Element | None:
        found = self.find_all(tag, **kwargs)
        return found[0] if found else None

    def by_id(self, element_id: str) -> Element:
        """Return the element with this id, or raise AssertionError naming it."""
        element = self.find(id=element_id)
        assert element is not None, f"no element with id {element_id!r}"
        return element

    def links(self) -> list[str]:
        return [a.attrs["href"] for a in self.find_all("a") if "href" in a.attrs]

    def rows(self) -> list[list[str]]:
        """Return the body rows of the first table at or below this element as cell texts."""
        table = self if self.tag == "table" else self.find("table")
        assert table is not None, "no table"
        body = table.find("tbody") or table
        return [
            [cell.text for cell in row.children if cell.tag in ("td", "th")]
            for row in body.find_all("tr")
        ]


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        parent = self.stack[-1]
        parent.children.append(element)
        parent.parts.append(element)
        if tag not in VOID_TAGS:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID_TAGS:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        # Close up to the matching open tag; a stray end tag is ignored.
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].parts.append(data)


def parse(html: str) -> Element:
    """Return the document tree of html."""
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root
