"""Failure fingerprints and the exception types they are built from."""

from __future__ import annotations

import pytest

from ingest_server.fingerprint import exception_type, fingerprint, normalize_message


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("assert 1 == 2", "AssertionError"),
        ("ValueError: invalid literal", "ValueError"),
        ("requests.exceptions.ConnectionError: refused", "requests.exceptions.ConnectionError"),
        ("Failed: DID NOT RAISE", "Failed"),
        ("KeyboardInterrupt", "KeyboardInterrupt"),
        ("fixture 'db' not found", None),
        ("note: something odd", None),
        ("", None),
        (None, None),
    ],
)
def test_exception_type_from_message(message: str | None, expected: str | None) -> None:
    assert exception_type(message, None) == expected


def test_exception_type_from_traceback() -> None:
    traceback = "    def test():\n>       wait()\nE       TimeoutError: waited 3 s\n"

    assert exception_type("waited too long", traceback) == "TimeoutError"


def test_same_cause_same_fingerprint() -> None:
    first = "ValueError: user 4521 not found in /tmp/pytest-of-ci/test_3/users.json"
    second = "ValueError: user 17 not found in /home/dev/tmp/test_9/users.json"

    assert fingerprint("ValueError", first, None) == fingerprint("ValueError", second, None)


def test_addresses_and_uuids_ignored() -> None:
    first = "RuntimeError: <Pool at 0x7f3a2b10> lost job 1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    second = "RuntimeError: <Pool at 0x55d0c0ffee> lost job 9a0c2c4e-11aa-4f3b-8a0f-aa00bb11cc22"

    assert fingerprint("RuntimeError", first, None) == fingerprint("RuntimeError", second, None)


def test_quoted_values_ignored() -> None:
    first = "KeyError: 'alice'"
    second = 'KeyError: "bob"'

    assert fingerprint("KeyError", first, None) == fingerprint("KeyError", second, None)


def test_different_types_differ() -> None:
    message = "boom"

    assert fingerprint("ValueError", message, None) != fingerprint("TypeError", message, None)


def test_different_messages_differ() -> None:
    first = "ValueError: user not found"
    second = "ValueError: user disabled"

    assert fingerprint("ValueError", first, None) != fingerprint("ValueError", second, None)


def test_fingerprint_is_sixteen_hex() -> None:
    value = fingerprint("ValueError", "x", None)

    assert len(value) == 16
    assert int(value, 16) >= 0


def test_traceback_used_without_message() -> None:
    first = fingerprint("OSError", None, "frame\nE   OSError: disk 1 full\n")
    second = fingerprint("OSError", None, "other frame\nE   OSError: disk 2 full\n")

    assert first == second


def test_normalize_keeps_identifiers() -> None:
    normalized = normalize_message("test_1 failed after 30s with code 7")

    assert normalized == "test_1 failed after <n>s with code <n>"
