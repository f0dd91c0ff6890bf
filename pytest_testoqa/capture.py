"""Bounding and redacting text before it leaves the test process."""

from __future__ import annotations

import re

from pytest_testoqa.identity import clean_text

REDACTED = "[REDACTED]"
TRUNCATION_MARK = "\n[... {omitted} characters truncated by TestoQA ...]\n"


def bound(text: str | None, limit: int) -> str | None:
    """Return text cut to about limit characters, keeping its head and tail and saying so."""
    if text is None:
        return None
    text = clean_text(text)
    if len(text) <= limit:
        return text
    if limit == 0:
        return TRUNCATION_MARK.format(omitted=len(text)).strip()
    head = limit // 2
    tail = limit - head
    omitted = len(text) - head - tail
    return text[:head] + TRUNCATION_MARK.format(omitted=omitted) + text[-tail:]


def redact(text: str | None, patterns: tuple[re.Pattern[str], ...]) -> str | None:
    if text is None or not patterns:
        return text
    for pattern in patterns:
        text = pattern.sub(REDACTED, text)
    return text
