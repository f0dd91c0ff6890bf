"""Generate a deterministic synthetic pytest suite with exactly N tests.

The suite imitates an ordinary project: most tests pass quickly, and the
rest fail with tracebacks, error in a fixture's setup, skip, xfail or xpass.
Some are parametrized, some print to stdout and stderr or log a warning,
and many use function-, class- or module-scoped fixtures with setup and
teardown. The same N and seed always produce the same files, so timings of
different reporters run the same tests.

The suite directory gets its own ``pytest.ini``, so it is its own rootdir and
ignores the configuration of any project around it. ``suite.json`` beside it
records the test count and the outcome counts pytest must report.

Usage::

    .venv/bin/python benchmarks/suite_generator.py /tmp/suite --tests 2000
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SEED = 20_240
TESTS_PER_MODULE = 50
PARAMETRIZE_CASES = 8
MANIFEST_NAME = "suite.json"


@dataclass(frozen=True)
class Kind:
    """One kind of generated test: how many per thousand, and the outcome pytest reports."""

    name: str
    per_mille: int
    outcome: str


# "plain" takes whatever share the other kinds leave, about 39 %.
KINDS: tuple[Kind, ...] = (
    Kind("fixture", 150, "passed"),
    Kind("param", 150, "passed"),
    Kind("print", 80, "passed"),
    Kind("class", 60, "passed"),
    Kind("module_fixture", 50, "passed"),
    Kind("log", 30, "passed"),
    Kind("fail_assert", 20, "failed"),
    Kind("fail_exception", 10, "failed"),
    Kind("skip_marker", 20, "skipped"),
    Kind("skip_inline", 15, "skipped"),
    Kind("skipif", 10, "skipped"),
    Kind("xfail", 15, "xfailed"),
    Kind("xpass", 3, "xpassed"),
    Kind("setup_error", 2, "error"),
)
PLAIN = Kind("plain", 0, "passed")
OUTCOME_OF = {kind.name: kind.outcome for kind in (*KINDS, PLAIN)}

PYTEST_INI = """\
[pytest]
# This file makes the generated suite its own rootdir.
testpaths = tests
"""

CONFTEST = '''\
import pytest


@pytest.fixture
def counter():
    """A per-test resource with setup and teardown."""
    state = {"calls": 0, "open": True}
    yield state
    state["open"] = False


@pytest.fixture(scope="module")
def module_resource():
    """A resource built once per module, like a connection pool."""
    resource = {"items": list(range(32)), "open": True}
    yield resource
    resource["open"] = False


@pytest.fixture
def broken_resource():
    """A fixture whose setup fails, so the test using it reports an error."""
    raise ConnectionError("the test resource could not be opened: connection refused")
'''

HELPERS = '''\
"""Helpers the generated tests call, so failures have tracebacks several frames deep."""


def parse_record(text):
    fields = dict(part.split("=", 1) for part in text.split(";"))
    tags = fields["tags"].split(",")
    return {"id": int(fields["id"]), "total": int(fields["total"]), "tags": tags}


def checked_total(record):
    return _validate(record)["total"]


def _validate(record):
    if record["total"] % 7 == 3:
        raise ValueError(f"record {record['id']}: total {record['total']} fails the checksum")
    return record
'''

MODULE_HEADER = """\
import logging
import sys

import pytest

from suite_helpers import checked_total, parse_record

log = logging.getLogger(__name__)
"""


def plan_kinds(tests: int, seed: int) -> list[str]:
    """Return the kind of every test, shuffled with seed; the shares follow KINDS."""
    names: list[str] = []
    for kind in KINDS:
        names += [kind.name] * (tests * kind.per_mille // 1000)
    names += [PLAIN.name] * (tests - len(names))
    random.Random(seed).shuffle(names)
    return names


def _function(kind: str, number: int) -> str:
    """Return the source of one test of kind; number makes its name unique in the suite."""
    value = number % 97
    if kind == "plain":
        return f"""
            def test_plain_{number}():
                values = list(range({value}))
                assert sum(values) == {value * (value - 1) // 2}
            """
    if kind == "fixture":
        return f"""
            def test_fixture_{number}(counter):
                counter["calls"] += {value}
                assert counter["open"] and counter["calls"] == {value}
            """
    if kind == "module_fixture":
        return f"""
            def test_module_fixture_{number}(module_resource):
                assert module_resource["items"][{value % 32}] == {value % 32}
            """
    if kind == "print":
        return f"""
            def test_print_{number}():
                print("processing record {number}: 3 fields, total {value}")
                print("warning: record {number} uses a deprecated field", file=sys.stderr)
                assert {value} >= 0
            """
    if kind == "log":
        return f"""
            def test_log_{number}():
                log.warning("record %d took the slow path", {number})
                assert True
            """
    if kind == "fail_assert":
        return f"""
            def test_fail_assert_{number}():
                record = parse_record("id={number};total={value};tags=a,b")
                assert record == {{"id": {number}, "total": {value + 1}, "tags": ["a", "b"]}}
            """
    if kind == "fail_exception":
        # _validate raises for a total of 3 modulo 7.
        return f"""
            def test_fail_exception_{number}():
                record = parse_record("id={number};total={value * 7 + 3};tags=x")
                assert checked_total(record) > 0
            """
    if kind == "skip_marker":
        return f"""
            @pytest.mark.skip(reason="record {number} needs a network share")
            def test_skip_marker_{number}():
                raise AssertionError("a skipped test must not run")
            """
    if kind == "skip_inline":
        return f"""
            def test_skip_inline_{number}():
                if {value} >= 0:
                    pytest.skip("record {number} is not supported on this platform")
            """
    if kind == "skipif":
        return f"""
            @pytest.mark.skipif(sys.version_info > (3,), reason="record {number} needs Python 2")
            def test_skipif_{number}():
                raise AssertionError("a skipped test must not run")
            """
    if kind == "xfail":
        return f"""
            @pytest.mark.xfail(reason="rounding of record {number} is a known bug")
            def test_xfail_{number}():
                assert round({value} + 0.5) == {value + 1}.5
            """
    if kind == "xpass":
        return f"""
            @pytest.mark.xfail(reason="record {number} was fixed upstream")
            def test_xpass_{number}():
                assert {value} == {value}
            """
    if kind == "setup_error":
        return f"""
            def test_setup_error_{number}(broken_resource):
                assert broken_resource is not None
            """
    raise ValueError(f"unknown test kind {kind!r}")


def _class(numbers: list[int]) -> str:
    """Return a test class with setup_method and teardown_method and one test per number."""
    lines = [
        f"class TestAccount{numbers[0]}:",
        "    def setup_method(self, method):",
        "        self.balance = 100",
        "",
        "    def teardown_method(self, method):",
        "        self.balance = None",
    ]
    for number in numbers:
        amount = number % 50
        lines += [
            "",
            f"    def test_withdraw_{number}(self):",
            f"        self.balance -= {amount}",
            f"        assert self.balance == {100 - amount}",
        ]
    return "\n".join(lines) + "\n"


def _parametrized(numbers: list[int]) -> str:
    """Return one parametrized test with a case for each number."""
    cases = ", ".join(f"({n % 97}, {(n % 97) ** 2})" for n in numbers)
    ids = ", ".join(f'"case-{n}"' for n in numbers)
    return (
        f'@pytest.mark.parametrize(("value", "square"), [{cases}], ids=[{ids}])\n'
        f"def test_square_{numbers[0]}(value, square):\n"
        "    assert value * value == square\n"
    )


def render_module(kinds: list[tuple[int, str]]) -> str:
    """Return the source of one test module holding the (number, kind) pairs."""
    blocks = [MODULE_HEADER]
    class_numbers = [n for n, kind in kinds if kind == "class"]
    param_numbers = [n for n, kind in kinds if kind == "param"]
    for number, kind in kinds:
        if kind not in ("class", "param"):
            blocks.append(textwrap.dedent(_function(kind, number)).strip() + "\n")
    if class_numbers:
        blocks.append(_class(class_numbers))
    for start in range(0, len(param_numbers), PARAMETRIZE_CASES):
        blocks.append(_parametrized(param_numbers[start : start + PARAMETRIZE_CASES]))
    return "\n\n".join(blocks)


def expected_outcomes(kinds: list[str]) -> dict[str, int]:
    """Return how many tests end in each outcome, by pytest's outcome names."""
    counts = Counter(OUTCOME_OF[kind] for kind in kinds)
    return dict(sorted(counts.items()))


def generate(directory: Path, tests: int, seed: int = DEFAULT_SEED) -> dict[str, object]:
    """Write a suite of exactly `tests` tests into directory; return its manifest.

    Raise FileExistsError when directory exists and is not empty, so an
    older suite is never mixed into the new one.
    """
    if tests < 1:
        raise ValueError(f"the number of tests must be at least 1, got {tests}")
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty: choose a new or empty directory")
    tests_dir = directory / "tests"
    tests_dir.mkdir(parents=True)
    (directory / "pytest.ini").write_text(PYTEST_INI)
    (tests_dir / "conftest.py").write_text(CONFTEST)
    (tests_dir / "suite_helpers.py").write_text(HELPERS)

    kinds = plan_kinds(tests, seed)
    numbered = list(enumerate(kinds))
    for index, start in enumerate(range(0, tests, TESTS_PER_MODULE)):
        module = render_module(numbered[start : start + TESTS_PER_MODULE])
        (tests_dir / f"test_module_{index:04d}.py").write_text(module)

    manifest: dict[str, object] = {
        "tests": tests,
        "seed": seed,
        "kinds": dict(sorted(Counter(kinds).items())),
        "outcomes": expected_outcomes(kinds),
    }
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="new or empty directory for the suite")
    parser.add_argument("--tests", type=int, default=2_000, help="number of tests (default 2000)")
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"shuffle seed (default {DEFAULT_SEED})"
    )
    args = parser.parse_args(argv)
    try:
        manifest = generate(args.directory, args.tests, args.seed)
    except (ValueError, FileExistsError) as exc:
        parser.error(str(exc))
    print(json.dumps(manifest, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
