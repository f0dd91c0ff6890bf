"""CSV responses of the report routes: the format parameter, safe cells and the response."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

from aiohttp import web

from ingest_server.services.errors import FieldError
from ingest_server.web.errors import RequestError

FORMATS = ("json", "csv")
# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def wants_csv(request: web.Request) -> bool:
    """Return True for ?format=csv, or raise a 422 for a format other than json or csv."""
    value = request.query.get("format", "json")
    if value not in FORMATS:
        raise RequestError(
            422,
            "validation_error",
            f"invalid format {value[:50]!r}: use json or csv",
            details=[FieldError("format", "use json or csv")],
        )
    return value == "csv"


def csv_cell(value: object) -> str | int | float:
    """Return value for a CSV cell, prefixing "'" to text a spreadsheet would run as a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    text = str(value)
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def csv_response(
    filename: str,
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    next_url: str | None = None,
) -> web.Response:
    """Return rows as a text/csv attachment, linking a next page in the Link header."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([csv_cell(value) for value in row] for row in rows)
    headers = {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store",
    }
    if next_url is not None:
        headers["Link"] = f'<{next_url}>; rel="next"'
    return web.Response(
        body=buffer.getvalue().encode(), content_type="text/csv", charset="utf-8", headers=headers
    )
