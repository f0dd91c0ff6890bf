"""Run a real project's test suite with the plugin and check the server against junitxml.

The script downloads the source distribution of a pinned open-source project
with ``pip download --no-binary :all:``. It installs the project, its test
requirements and this repository (``-e .[server]`` with pytest-xdist) into a
temporary virtual environment. Then it starts an ingest server on a fresh
SQLite file on 127.0.0.1 and runs the project's tests with::

    pytest -n 2 --testoqa-project REAL --junitxml=FILE

It then compares, test by test, the final outcome the server stores (the last
attempt of each case, from ``GET /api/v1/projects/REAL/runs/RUN/executions``)
with the outcome in the junitxml file, and the counts per outcome of pytest's
terminal summary, the junitxml file, the server's run totals and the
server's executions. It prints the comparison and exits with status 1 on any
mismatch. The server, the virtual environment and the download are removed
on exit.

Run from the repository root::

    .venv/bin/python benchmarks/real_suite.py            # attrs
    .venv/bin/python benchmarks/real_suite.py --project more-itertools
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overhead import (
    REPO_ROOT,
    BenchmarkError,
    LocalServer,
    clean_environment,
    local_server,
    parse_summary,
)

PROJECT_KEY = "REAL"
INSTALL_TIMEOUT = 900.0
SUITE_TIMEOUT = 1800.0
# pytest's exit statuses for "all passed" and "some tests failed"; others mean no full run.
ACCEPTED_EXIT_STATUSES = (0, 1)
# The runner's own versions, pinned like the test requirements.
TOOL_REQUIREMENTS = ("pytest==9.2.0", "pytest-xdist==3.8.0")
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")


@dataclass(frozen=True)
class RealProject:
    """A project whose source distribution ships its tests, with pinned test requirements."""

    name: str
    version: str
    test_requirements: tuple[str, ...]
    pytest_args: tuple[str, ...] = ()


# The test requirements come from each project's own metadata: the "tests"
# dependency group of attrs, and nothing beyond pytest for more-itertools.
# They are pinned to the versions that were current when this script was written.
PROJECTS = {
    "attrs": RealProject(
        "attrs",
        "26.1.0",
        ("cloudpickle==3.1.2", "hypothesis==6.170.15", "pympler==1.1", "psutil==7.2.2"),
    ),
    "more-itertools": RealProject("more-itertools", "11.2.1", (), ("tests",)),
}


def run_step(description: str, command: Sequence[str], timeout: float, **kwargs: Any) -> str:
    """Run one setup command; raise BenchmarkError with its output when it fails."""
    print(f"{description}: {shlex.join(command)}", flush=True)
    try:
        completed = subprocess.run(
            list(command),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchmarkError(f"{description} timed out after {timeout} s") from exc
    if completed.returncode != 0:
        raise BenchmarkError(
            f"{description} failed with exit status {completed.returncode}:\n"
            f"{(completed.stderr or completed.stdout)[-3000:]}"
        )
    return completed.stdout


def prepare(project: RealProject, workdir: Path) -> tuple[Path, Path]:
    """Download and unpack the sdist, and build the virtual environment.

    Return the unpacked source directory and the environment's Python.
    """
    download = workdir / "download"
    run_step(
        "download the source distribution",
        [
            *(sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"),
            *("--dest", str(download), f"{project.name}=={project.version}"),
        ],
        INSTALL_TIMEOUT,
    )
    archives = sorted(download.glob("*.tar.gz"))
    if len(archives) != 1:
        raise BenchmarkError(f"expected one .tar.gz in {download}, found {archives}")
    source_root = workdir / "source"
    with tarfile.open(archives[0]) as archive:
        archive.extractall(source_root, filter="data")
    (source,) = source_root.iterdir()
    if not (source / "tests").is_dir():
        raise BenchmarkError(f"the source distribution of {project.name} has no tests/ folder")

    venv = workdir / "venv"
    run_step("create the virtual environment", [sys.executable, "-m", "venv", str(venv)], 300)
    python = venv / "bin" / "python"
    run_step(
        "install the project, its test requirements and TestoQA",
        [
            *(str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
            *("-e", f"{REPO_ROOT}[server]", *TOOL_REQUIREMENTS, str(source)),
            *project.test_requirements,
        ],
        INSTALL_TIMEOUT,
    )
    return source, python


# --- outcomes from the three sources -----------------------------------------------


def junit_address(node_id: str) -> tuple[str, str]:
    """Return the (classname, name) that pytest's junitxml writes for a node id.

    The file path becomes a dotted module path without ``.py``, every part but
    the last joins the classname, and a parametrize id stays on the name.
    """
    path, bracket, parameters = node_id.partition("[")
    parts = path.split("::")
    parts[0] = parts[0].replace("/", ".").removesuffix(".py")
    parts[-1] += bracket + parameters
    return ".".join(parts[:-1]), parts[-1]


def junit_outcomes(path: Path) -> tuple[dict[tuple[str, str], str], int]:
    """Return each test's outcome in a junitxml file by (classname, name), and the double failures.

    junitxml has no xpassed: a non-strict xpass is a passing test case there.
    pytest writes two elements, a failure and an error, for a test that fails
    in its call and again in teardown. The failure decides its outcome, as on
    the server, and the second number counts such tests.
    """
    # The file was written a moment ago by the pytest run this script started.
    root = ElementTree.parse(path).getroot()  # noqa: S314
    found: dict[tuple[str, str], list[str]] = {}
    for case in root.iter("testcase"):
        key = (case.get("classname", ""), case.get("name", ""))
        found.setdefault(key, []).append(_element_outcome(case))
    outcomes = {}
    double_failures = 0
    for key, seen in found.items():
        double_failures += "failed" in seen and "error" in seen
        for outcome in ("failed", "error", "xfailed", "skipped", "passed"):
            if outcome in seen:
                outcomes[key] = outcome
                break
    return outcomes, double_failures


def _element_outcome(case: ElementTree.Element) -> str:
    if case.find("failure") is not None:
        return "failed"
    if case.find("error") is not None:
        return "error"
    skipped = case.find("skipped")
    if skipped is not None:
        return "xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"
    return "passed"


def server_outcomes(server: LocalServer, run_id: str) -> tuple[dict[str, str], int]:
    """Return the final outcome of every case of the run, by case key, and the executions read."""
    last: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    read = 0
    while True:
        query = "limit=500" + (f"&cursor={cursor}" if cursor else "")
        page = server.get_json(f"/runs/{run_id}/executions?{query}")
        for execution in page["items"]:
            read += 1
            key = execution["case_key"]
            if key not in last or execution["attempt"] > last[key]["attempt"]:
                last[key] = execution
        cursor = page["next_cursor"]
        if not cursor:
            break
    return {key: execution["outcome"] for key, execution in last.items()}, read


# --- comparison -------------------------------------------------------------------------


def as_junit_outcome(outcome: str) -> str:
    """Map a server outcome to what junitxml can express."""
    return "passed" if outcome == "xpassed" else outcome


def compare(
    server_by_case: dict[str, str],
    junit: dict[tuple[str, str], str],
    summary: dict[str, int],
    totals: dict[str, int],
) -> list[str]:
    """Return every mismatch between the sources, as lines to print; empty when all agree."""
    problems = []
    by_address: dict[tuple[str, str], str] = {}
    for key in server_by_case:
        address = junit_address(key)
        if address in by_address:
            problems.append(f"{key} and {by_address[address]} both map to junitxml {address}")
        by_address[address] = key

    for address in sorted(set(junit) - set(by_address)):
        problems.append(f"in junitxml only: {address} ({junit[address]})")
    for address in sorted(set(by_address) - set(junit)):
        key = by_address[address]
        problems.append(f"on the server only: {key} ({server_by_case[key]})")
    for address in sorted(set(junit) & set(by_address)):
        key = by_address[address]
        if as_junit_outcome(server_by_case[key]) != junit[address]:
            problems.append(
                f"{key}: the server says {server_by_case[key]}, junitxml says {junit[address]}"
            )

    executions = Counter(server_by_case.values())
    for outcome in OUTCOMES:
        stored = executions.get(outcome, 0)
        if summary.get(outcome, 0) != stored or totals.get(outcome, 0) != stored:
            problems.append(
                f"{outcome}: pytest's summary has {summary.get(outcome, 0)}, the run totals "
                f"{totals.get(outcome, 0)}, the executions {stored}"
            )
    return problems


def print_counts(
    server_by_case: dict[str, str],
    junit: dict[tuple[str, str], str],
    summary: dict[str, int],
    totals: dict[str, int],
) -> None:
    executions = Counter(server_by_case.values())
    junit_counts = Counter(junit.values())
    print("| outcome | pytest summary | junitxml | server run totals | server executions |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for outcome in OUTCOMES:
        # junitxml counts an xpass as passed, so it has no xpassed column of its own.
        in_junit = "-" if outcome == "xpassed" else str(junit_counts.get(outcome, 0))
        print(
            f"| {outcome} | {summary.get(outcome, 0)} | {in_junit} | {totals.get(outcome, 0)} "
            f"| {executions.get(outcome, 0)} |"
        )
    print(
        f"| total | {sum(summary.values())} | {len(junit)} | {sum(totals.values())} "
        f"| {len(server_by_case)} |"
    )


# --- entry point --------------------------------------------------------------------


def run(project: RealProject, workdir: Path, workers: int) -> int:
    source, python = prepare(project, workdir)
    junit_path = workdir / "junit.xml"
    with local_server(str(python), workdir / "server", PROJECT_KEY) as server:
        command = [str(python), "-m", "pytest", "-n", str(workers), "-p", "no:cacheprovider"]
        command += ["--testoqa-project", PROJECT_KEY, f"--junitxml={junit_path}"]
        command += [f"--testoqa-spool-dir={workdir / 'spool'}", *project.pytest_args]
        env = clean_environment() | {"TESTOQA_URL": server.url, "TESTOQA_TOKEN": server.token}
        print(f"run the suite in {source}: {shlex.join(command)}", flush=True)
        started = time.perf_counter()
        completed = subprocess.run(
            command,
            cwd=source,
            env=env,
            capture_output=True,
            text=True,
            timeout=SUITE_TIMEOUT,
            check=False,
        )
        wall = time.perf_counter() - started
        output = completed.stdout + completed.stderr
        (workdir / "pytest-output.txt").write_text(output)
        tail = "\n".join(output.strip().splitlines()[-8:])
        print(f"pytest exited with status {completed.returncode} after {wall:.1f} s:\n{tail}\n")
        if completed.returncode not in ACCEPTED_EXIT_STATUSES:
            raise BenchmarkError(f"the suite did not run to the end:\n{output[-3000:]}")

        runs = server.get_json("/runs?limit=10")["items"]
        if len(runs) != 1:
            raise BenchmarkError(f"expected one run on the fresh server, found {len(runs)}")
        run_id = runs[0]["id"]
        detail = server.get_json(f"/runs/{run_id}")
        server_by_case, read = server_outcomes(server, run_id)

    summary = parse_summary(output)
    junit, double_failures = junit_outcomes(junit_path)
    if double_failures:
        # pytest's summary counts these tests twice, once failed and once as an error.
        summary["error"] -= double_failures
        print(f"{double_failures} tests failed in their call and in teardown")
    totals = {name: count for name, count in detail["totals"].items() if count}
    print(
        f"{project.name} {project.version}: {len(junit)} test cases in junitxml; "
        f"run {run_id} is {detail['status']} with {read} executions for "
        f"{len(server_by_case)} cases ({detail['attempts']} attempts, "
        f"{detail['not_run']} collected but not run)"
    )
    print_counts(server_by_case, junit, summary, totals)
    problems = compare(server_by_case, junit, summary, totals)
    if detail["status"] != "finished":
        problems.append(f"the run's status is {detail['status']}, expected finished")
    if detail["not_run"]:
        problems.append(f"{detail['not_run']} collected cases have no execution on the server")
    if problems:
        print(f"\nMISMATCH: {len(problems)} differences between the server and junitxml:")
        for problem in problems[:200]:
            print(f"  {problem}")
        return 1
    print("\nOK: every test's final outcome on the server matches junitxml and pytest's summary.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--project",
        choices=sorted(PROJECTS),
        default="attrs",
        help="the project whose test suite runs (default attrs)",
    )
    parser.add_argument("--workers", type=int, default=2, help="xdist workers (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    project = PROJECTS[args.project]
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="testoqa-real-suite-"))
    try:
        return run(project, workdir, args.workers)
    except BenchmarkError as exc:
        print(f"real-suite check failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
