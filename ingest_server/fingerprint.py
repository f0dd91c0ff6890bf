"""Failure fingerprints: group failures whose cause is the same, whatever the run's details.

A fingerprint is the exception type plus the failure message with its
run-specific parts replaced (uuids, hex addresses, quoted strings, paths and
numbers), hashed to 16 hex characters. Two failures with the same type and
the same message shape share a fingerprint; a different exception type
always gives a different one.
"""

from __future__ import annotations

import hashlib
import re

FINGERPRINT_CHARS = 16
MAX_EXCEPTION_TYPE_CHARS = 200
# Only the start of a long message is hashed; assertion diffs can run to
# megabytes and their tail rarely changes what the failure is about.
MAX_HASHED_CHARS = 4_000

# pytest reports a rewritten assertion without its type ("assert 1 == 2").
_ASSERTION = re.compile(r"^assert\b")
# "ValueError: boom" or "package.module.CustomError: x": a class name starts
# with a capital, which keeps prose such as "note: ..." from counting.
_TYPE_NAME = r"(?:[A-Za-z_]\w*\.)*[A-Z]\w*"
_TYPE_PREFIX = re.compile(rf"^({_TYPE_NAME}):(?:\s|$)")
# An exception raised without arguments prints its bare name.
_BARE_TYPE = re.compile(rf"^({_TYPE_NAME}(?:Error|Exception|Interrupt|Exit|Warning))$")
# pytest's long tracebacks mark the exception lines with "E   ".
_TRACEBACK_ERROR_LINE = re.compile(rf"^E\s+({_TYPE_NAME}):(?:\s|$)")

# Applied in this order: a uuid contains hex digits and numbers, and a
# quoted string can contain a path.
_NORMALIZERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"\b[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\b"
        ),
        "<uuid>",
    ),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\""), "<str>"),
    (re.compile(r"(?:[A-Za-z]:)?(?:[\w.~-]*[/\\])+[\w.~-]*"), "<path>"),
    (re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
)


def exception_type(message: str | None, traceback: str | None) -> str | None:
    """Return the exception type a failure names, or None when neither text names one.

    The message is pytest's crash line ("ValueError: boom"); when it lacks a
    type, the last ``E   Type: ...`` line of the long traceback is used.
    """
    first_line = (message or "").strip().split("\n", 1)[0]
    if _ASSERTION.match(first_line):
        return "AssertionError"
    match = _TYPE_PREFIX.match(first_line) or _BARE_TYPE.match(first_line)
    if match:
        return match.group(1)[:MAX_EXCEPTION_TYPE_CHARS]
    for line in reversed((traceback or "").splitlines()):
        match = _TRACEBACK_ERROR_LINE.match(line)
        if match:
            return match.group(1)[:MAX_EXCEPTION_TYPE_CHARS]
    return None


def normalize_message(text: str) -> str:
    """Return text with uuids, hex addresses, quoted strings, paths and numbers replaced."""
    normalized = text[:MAX_HASHED_CHARS]
    for pattern, replacement in _NORMALIZERS:
        normalized = pattern.sub(replacement, normalized)
    return normalized.strip()


def _failure_text(message: str | None, traceback: str | None) -> str:
    if message and message.strip():
        return message
    lines = [line for line in (traceback or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def fingerprint(exception: str | None, message: str | None, traceback: str | None) -> str:
    """Return the 16-hex-character fingerprint of a failure's cause."""
    text = normalize_message(_failure_text(message, traceback))
    digest = hashlib.sha256(f"{exception or ''}\n{text}".encode()).hexdigest()
    return digest[:FINGERPRINT_CHARS]
