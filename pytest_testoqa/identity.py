"""Test identity: the stable key of a collected item and what else describes it."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

# The server accepts case keys of up to 500 characters.
MAX_KEY_LENGTH = 500
HASH_SUFFIX_LENGTH = 16
MAX_TEXT = 1000
MAX_MARKERS = 100


def clean_text(value: str) -> str:
    """Return value with lone surrogates replaced, so it always encodes as UTF-8."""
    return value.encode("utf-8", "replace").decode("utf-8")


def cap_key(key: str) -> str:
    """Shorten an over-long key to the server's limit, keeping it unique with a hash suffix."""
    key = clean_text(key)
    if len(key) <= MAX_KEY_LENGTH:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:HASH_SUFFIX_LENGTH]
    return f"{key[: MAX_KEY_LENGTH - HASH_SUFFIX_LENGTH - 1]}~{digest}"


class InvalidMarker(ValueError):
    """A ``testoqa`` marker without a usable key; the message names the test."""


def explicit_key(item: pytest.Item) -> str | None:
    """Return the key pinned by ``@pytest.mark.testoqa(key=...)``, if any.

    A parametrized test keeps its parametrize id after the pinned key, so
    each of its items stays a case of its own.
    """
    marker = item.get_closest_marker("testoqa")
    if marker is None:
        return None
    key = marker.kwargs.get("key")
    if not isinstance(key, str) or not key.strip():
        raise InvalidMarker(
            f"{item.nodeid}: @pytest.mark.testoqa needs key= with a non-empty string, "
            f"got {key!r}; the test is reported under its node id"
        )
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        return f"{key.strip()}[{callspec.id}]"
    return key.strip()


def case_key(item: pytest.Item, problems: list[str] | None = None) -> str:
    """Return the item's case key: its pinned key, else its node id.

    pytest already makes node ids relative to the rootdir with '/' separators
    on every platform, and keeps the parametrize id. An invalid marker falls
    back to the node id and adds its message to problems.
    """
    try:
        pinned = explicit_key(item)
    except InvalidMarker as exc:
        if problems is not None:
            problems.append(str(exc))
        pinned = None
    return cap_key(pinned or item.nodeid)


def _marker_names(item: pytest.Item) -> list[str]:
    names = []
    for marker in item.iter_markers():
        if marker.name not in ("parametrize", "usefixtures", "testoqa", "filterwarnings"):
            names.append(clean_text(marker.name)[:200])
    return sorted(set(names))[:MAX_MARKERS]


def describe(item: pytest.Item, problems: list[str] | None = None) -> dict[str, Any]:
    """Return the case payload of an item: key, node id, file, line, class, function, markers."""
    path, line, _ = item.location
    cls = getattr(item, "cls", None)
    function = getattr(item, "originalname", None) or item.name.split("[")[0]
    return {
        "key": case_key(item, problems),
        "node_id": clean_text(item.nodeid)[:4000],
        "file": clean_text(path.replace("\\", "/"))[:MAX_TEXT],
        "name": clean_text(item.name)[:MAX_TEXT],
        "line": line + 1 if line is not None else None,
        "class_name": clean_text(cls.__qualname__)[:MAX_TEXT] if cls is not None else None,
        "function": clean_text(function)[:MAX_TEXT],
        "markers": _marker_names(item),
    }


def parameters(item: pytest.Item) -> dict[str, str]:
    """Return the item's parametrize arguments as short text, by argument name."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return {}
    values = {}
    for name, value in list(callspec.params.items())[:100]:
        try:
            text = repr(value)
        except Exception:  # a user's __repr__ may raise anything
            text = f"<{type(value).__name__}>"
        values[clean_text(str(name))[:100]] = clean_text(text)[:1000]
    return values
