"""Measure what the TestoQA plugin adds to a pytest run, next to pytest's own reporters.

For each suite size and each xdist setting, the script generates a synthetic
suite (``suite_generator.py``), starts one ingest server on a fresh SQLite
file, and then times whole pytest processes in interleaved rounds. Each
round runs every variant once, in an order rotated from round to round:

* ``plain``: ``-p no:testoqa``, so pytest runs without the plugin;
* ``inactive``: the plugin is installed but no project is set;
* ``junitxml``: ``-p no:testoqa --junitxml=FILE``;
* ``reportlog``: ``-p no:testoqa --report-log=FILE`` (pytest-reportlog);
* ``testoqa``: ``--testoqa-project BENCH``, reporting to the local server.

Each pytest process runs in its own session and is reaped with
``os.wait4``, whose resource usage covers the process and every descendant
it reaped (xdist workers included). CPU time is user plus system time of
that tree. Peak memory is ``ru_maxrss`` of the same call, so it is the
largest single process of the tree, not the sum over xdist workers. The
server's own CPU time, read from ``/proc``, is reported apart: it is not
part of the pytest process tree. Ratios and CPU differences are medians of
per-round pairs with ``plain``, so slow drifts in machine load cancel out.

Every run is checked: pytest must report the outcome counts the generator
promised, or the script stops. A ``testoqa`` run that does not report every
execution as sent, and a server run whose totals differ at the end, are
listed after the table and make the script exit with status 1. Everything
listens on 127.0.0.1; the server and the temporary directory are removed on
exit.

Run from the repository root with the dev extras installed::

    .venv/bin/python benchmarks/overhead.py --sizes 2000 10000 --rounds 5

``--profile`` instead runs ``plain`` and ``testoqa`` without xdist under a
launcher that measures each phase of the main thread (wall time, CPU time,
peak RSS) and the CPU time of the plugin's sender thread. Then it profiles
both threads of one more ``testoqa`` run with cProfile and lists where the
plugin spends its time.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import pstats
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import suite_generator

import pytest_testoqa

REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT_KEY = "BENCH"
HOST = "127.0.0.1"
TARGET_WALL_RATIO = 1.05
TARGET_CPU_US_PER_TEST = 100.0
SERVER_START_TIMEOUT = 60.0
SERVER_STOP_TIMEOUT = 30.0
CLI_TIMEOUT = 120.0
HTTP_TIMEOUT = 60.0
# pytest exits with 1 when some tests failed, which the generated suite ensures.
EXPECTED_EXIT_STATUS = 1
SUMMARY_PATTERN = re.compile(r"(\d+) (passed|failed|skipped|xfailed|xpassed|errors?)\b")
SENT_PATTERN = re.compile(r"(\d+) executions sent to project (\w+)")
ENVIRONMENT_PREFIXES = ("TESTOQA_", "PYTEST_", "CI")


class BenchmarkError(Exception):
    """A run that failed or produced wrong results; the message names the run and the cause."""


# --- local ingest server ------------------------------------------------------


def run_cli(python: str, database_url: str, *args: str) -> str:
    """Run ``python -m ingest_server`` with args and return its standard output."""
    command = [python, "-m", "ingest_server", *args, "--database-url", database_url]
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchmarkError(
            f"'testoqa-server {args[0]}' timed out after {CLI_TIMEOUT} s"
        ) from exc
    if completed.returncode != 0:
        raise BenchmarkError(
            f"'testoqa-server {args[0]}' failed with exit status {completed.returncode}: "
            f"{completed.stderr.strip() or completed.stdout.strip()}"
        )
    return completed.stdout


@dataclass
class LocalServer:
    """An ingest server subprocess on 127.0.0.1 with one project and a reporter token."""

    process: subprocess.Popen[bytes]
    url: str
    project: str
    token: str

    def cpu_seconds(self) -> float | None:
        """Return the server's user plus system CPU time so far, or None off Linux."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        # Fields 14 and 15 of proc(5), utime and stime, counted from the state field.
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def get_json(self, path: str) -> Any:
        """GET an API path of the project, such as ``/runs``, and return the decoded body."""
        # The URL is the local server this script started on 127.0.0.1.
        url = f"{self.url}/api/v1/projects/{self.project}{path}"
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}"})  # noqa: S310
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:  # noqa: S310
            return json.loads(response.read())


@contextlib.contextmanager
def local_server(python: str, workdir: Path, project: str = PROJECT_KEY) -> Iterator[LocalServer]:
    """Start a server on a fresh SQLite file in workdir with a project; stop it on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    database_url = f"sqlite+aiosqlite:///{workdir / 'testoqa.db'}"
    run_cli(python, database_url, "create-project", project, "--name", "Overhead benchmark")
    output = run_cli(
        python, database_url, "create-token", project, "--name", "benchmark", "--role", "reporter"
    )
    token = output.strip().splitlines()[-1]
    stdout_path, stderr_path = workdir / "server.out", workdir / "server.log"
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [
                *(python, "-m", "ingest_server", "serve", "--host", HOST, "--port", "0"),
                *("--log-level", "WARNING", "--database-url", database_url),
            ],
            stdout=stdout,
            stderr=stderr,
        )
    try:
        url = _wait_for_banner(process, stdout_path, stderr_path)
        yield LocalServer(process, url, project, token)
    finally:
        stop_process(process)


def _wait_for_banner(process: subprocess.Popen[bytes], stdout: Path, stderr: Path) -> str:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        found = re.search(r"listening on (http://\S+)", stdout.read_text())
        if found:
            return found.group(1)
        if process.poll() is not None:
            raise BenchmarkError(
                f"the server exited with status {process.returncode} before listening:\n"
                f"{stderr.read_text()[-2000:]}"
            )
        time.sleep(0.05)
    raise BenchmarkError(f"the server did not print its URL within {SERVER_START_TIMEOUT} s")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Send SIGTERM, then SIGKILL if the process is still running after the timeout."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=SERVER_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=SERVER_STOP_TIMEOUT)


# --- one measured pytest process ----------------------------------------------


@dataclass(frozen=True)
class Sample:
    """Wall time, CPU time (seconds) and peak RSS (bytes) of one pytest process tree."""

    wall: float
    cpu: float
    max_rss: int
    exit_status: int
    output: str


def run_measured(
    command: Sequence[str], cwd: Path, env: dict[str, str], output_path: Path, timeout: float
) -> Sample:
    """Run command to completion in its own session and measure it with ``os.wait4``.

    A watchdog kills the whole process group after timeout seconds, so a hung
    run cannot stall the benchmark.
    """
    with output_path.open("wb") as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        watchdog = threading.Timer(timeout, _kill_group, args=(process.pid,))
        watchdog.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            watchdog.cancel()
        wall = time.perf_counter() - started
    # The process is reaped already: tell Popen so, to keep it from waiting again.
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode == -signal.SIGKILL:
        raise BenchmarkError(f"{shlex.join(command)} was killed after {timeout} s")
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    rss_unit = 1 if sys.platform == "darwin" else 1024
    return Sample(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        max_rss=usage.ru_maxrss * rss_unit,
        exit_status=process.returncode,
        output=output_path.read_text(errors="replace"),
    )


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def parse_summary(output: str) -> dict[str, int]:
    """Return the outcome counts of pytest's final summary line, with "errors" as "error"."""
    lines = [line for line in output.splitlines() if re.search(r" in [\d.]+s", line)]
    if not lines:
        raise BenchmarkError(f"no pytest summary line in the output:\n{output[-2000:]}")
    counts = {}
    for number, word in SUMMARY_PATTERN.findall(lines[-1]):
        counts["error" if word.startswith("error") else word] = int(number)
    return dict(sorted(counts.items()))


# --- variants -------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    plugin: bool = False
    reports_to_server: bool = False


VARIANTS: tuple[Variant, ...] = (
    Variant("plain", "pytest -p no:testoqa"),
    Variant("inactive", "plugin installed, no project set", plugin=True),
    Variant("junitxml", "-p no:testoqa --junitxml=FILE"),
    Variant("reportlog", "-p no:testoqa --report-log=FILE"),
    Variant("testoqa", "--testoqa-project BENCH, local server", True, True),
)
BASELINE = "plain"


def clean_environment() -> dict[str, str]:
    """Return os.environ without settings that would change what pytest or the plugin do."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(ENVIRONMENT_PREFIXES)
    }


def variant_command(
    variant: Variant, workers: int, outputs: Path, server: LocalServer | None
) -> tuple[list[str], dict[str, str]]:
    """Return the pytest command line and environment of one variant."""
    command = [sys.executable, "-m", "pytest"]
    env = clean_environment()
    if workers:
        command += ["-n", str(workers)]
    if not variant.plugin:
        command += ["-p", "no:testoqa"]
    if variant.name == "junitxml":
        command.append(f"--junitxml={outputs / 'junit.xml'}")
    elif variant.name == "reportlog":
        command.append(f"--report-log={outputs / 'report.jsonl'}")
    elif variant.reports_to_server:
        assert server is not None
        command += ["--testoqa-project", server.project]
        command.append(f"--testoqa-spool-dir={outputs / 'spool'}")
        env["TESTOQA_URL"] = server.url
        env["TESTOQA_TOKEN"] = server.token
    return command, env


# --- one configuration: a suite size and an xdist setting -------------------------


@dataclass
class Measurements:
    """The samples of one configuration, by variant, in round order."""

    tests: int
    workers: int
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    server_cpu: list[float] = field(default_factory=list)
    # Runs whose executions did not all reach the server, and how the server's runs differ.
    problems: list[str] = field(default_factory=list)


def check_sample(sample: Sample, variant: Variant, manifest: dict[str, Any]) -> str | None:
    """Check that the run reported what the generated suite must produce.

    Raise BenchmarkError when pytest itself reported something else. Return a
    description of the problem when the plugin did not deliver every
    execution, so the benchmark goes on and reports it at the end.
    """
    tail = sample.output[-3000:]
    if sample.exit_status != EXPECTED_EXIT_STATUS:
        raise BenchmarkError(
            f"{variant.name}: pytest exited with {sample.exit_status}, "
            f"expected {EXPECTED_EXIT_STATUS}:\n{tail}"
        )
    counts = parse_summary(sample.output)
    if counts != manifest["outcomes"]:
        raise BenchmarkError(
            f"{variant.name}: pytest reported {counts}, the suite has {manifest['outcomes']}"
        )
    if variant.reports_to_server:
        sent = SENT_PATTERN.search(sample.output)
        if sent is None or int(sent.group(1)) != manifest["tests"]:
            return (
                f"the plugin did not report {manifest['tests']} executions as sent; "
                f"its summary section:\n{plugin_section(sample.output)}"
            )
    return None


def plugin_section(output: str) -> str:
    """Return the lines of the plugin's section in pytest's terminal summary."""
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if re.fullmatch(r"[-=]+ TestoQA.* [-=]+", line.strip()):
            section = [line]
            for following in lines[index + 1 :]:
                if re.match(r"[-=]{3,} ", following):
                    break
                section.append(following)
            return "\n".join(section)
    return "(no TestoQA section in the output)"


def check_server_totals(server: LocalServer, manifest: dict[str, Any], runs: int) -> list[str]:
    """Return how the server's runs differ from `runs` finished runs with the suite's totals."""
    page = server.get_json("/runs?limit=500")
    problems = []
    if len(page["items"]) != runs:
        problems.append(f"the server has {len(page['items'])} runs, expected {runs}")
    for run in page["items"]:
        totals = {name: count for name, count in run["totals"].items() if count}
        if totals != manifest["outcomes"] or run["status"] != "finished":
            problems.append(
                f"run {run['id']} is {run['status']} with totals {totals}, "
                f"expected finished with {manifest['outcomes']}"
            )
    return problems


def measure_configuration(
    tests: int, workers: int, rounds: int, workdir: Path, timeout: float
) -> Measurements:
    """Generate the suite, start a server, run a warm-up and then the interleaved rounds."""
    suite = workdir / f"suite-{tests}"
    if not suite.exists():
        suite_generator.generate(suite, tests)
    manifest = json.loads((suite / suite_generator.MANIFEST_NAME).read_text())
    outputs = workdir / f"out-{tests}-n{workers}"
    outputs.mkdir()
    result = Measurements(tests, workers, {variant.name: [] for variant in VARIANTS})
    server_dir = workdir / f"server-{tests}-n{workers}"
    with local_server(sys.executable, server_dir) as server:
        # The warm-up compiles the suite's bytecode and warms the server.
        for variant in (VARIANTS[0], VARIANTS[-1]):
            command, env = variant_command(variant, workers, outputs, server)
            sample = run_measured(command, suite, env, outputs / "warm-up.txt", timeout)
            problem = check_sample(sample, variant, manifest)
            if problem:
                result.problems.append(f"{tests} tests, -n {workers}, warm-up: {problem}")
        for round_number in range(rounds):
            shift = round_number % len(VARIANTS)
            for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                command, env = variant_command(variant, workers, outputs, server)
                server_before = server.cpu_seconds()
                output_path = outputs / f"{variant.name}-{round_number}.txt"
                sample = run_measured(command, suite, env, output_path, timeout)
                server_after = server.cpu_seconds()
                problem = check_sample(sample, variant, manifest)
                if problem:
                    server_log = (server_dir / "server.log").read_text()[-1500:]
                    result.problems.append(
                        f"{tests} tests, -n {workers}, round {round_number + 1}, {variant.name}: "
                        f"{problem}\nend of the server log:\n{server_log or '(empty)'}"
                    )
                result.samples[variant.name].append(sample)
                if variant.reports_to_server and server_before is not None:
                    result.server_cpu.append((server_after or 0.0) - server_before)
                print(
                    f"  {tests} tests, -n {workers}, round {round_number + 1}/{rounds}, "
                    f"{variant.name}: {sample.wall:.2f} s wall, {sample.cpu:.2f} s CPU",
                    file=sys.stderr,
                    flush=True,
                )
        result.problems += check_server_totals(server, manifest, runs=rounds + 1)
    return result


# --- report ---------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    variant: str
    tests: int
    workers: int
    wall: float
    cpu: float
    wall_ratio: float
    cpu_us_per_test: float
    peak_mb: float


def summarize(measurements: Measurements) -> list[Row]:
    """Return one row per variant: medians, and medians of per-round pairs with plain."""
    baseline = measurements.samples[BASELINE]
    rows = []
    for variant in VARIANTS:
        samples = measurements.samples[variant.name]
        pairs = list(zip(samples, baseline, strict=True))
        rows.append(
            Row(
                variant=variant.name,
                tests=measurements.tests,
                workers=measurements.workers,
                wall=statistics.median(s.wall for s in samples),
                cpu=statistics.median(s.cpu for s in samples),
                wall_ratio=statistics.median(s.wall / b.wall for s, b in pairs),
                cpu_us_per_test=statistics.median((s.cpu - b.cpu) for s, b in pairs)
                / measurements.tests
                * 1e6,
                peak_mb=max(s.max_rss for s in samples) / 2**20,
            )
        )
    return rows


def verdict(row: Row) -> str:
    if row.variant not in ("testoqa", "inactive"):
        return ""
    within = row.wall_ratio <= TARGET_WALL_RATIO and row.cpu_us_per_test <= TARGET_CPU_US_PER_TEST
    return "within target" if within else "MISSES target"


def format_table(rows: list[Row]) -> str:
    header = (
        "| variant | tests | xdist | wall median (s) | CPU median (s) | wall vs plain "
        "| CPU over plain (µs/test) | peak RSS (MB) | target |"
    )
    lines = [header, "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for row in rows:
        xdist = f"-n {row.workers}" if row.workers else "no"
        lines.append(
            f"| {row.variant} | {row.tests} | {xdist} | {row.wall:.2f} | {row.cpu:.2f} "
            f"| {row.wall_ratio:.3f} | {row.cpu_us_per_test:+.0f} | {row.peak_mb:.0f} "
            f"| {verdict(row)} |"
        )
    return "\n".join(lines)


def describe_machine() -> list[str]:
    versions = [
        f"{name} {importlib.metadata.version(name)}"
        for name in ("pytest", "pytest-xdist", "pytest-reportlog")
    ]
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return [
        f"command: {shlex.join([sys.executable, *sys.argv])}",
        f"machine: {os.cpu_count()} CPUs (nproc), {platform.machine()}, {platform.platform()}",
        f"Python {platform.python_version()}; {'; '.join(versions)}",
        f"plugin measured: {Path(pytest_testoqa.__file__).parent}",
        f"load average (1, 5, 15 min) now: {load}",
    ]


# --- profiling ------------------------------------------------------------------

# Runs pytest.main() in this interpreter. It marks the phases of the main
# thread with hook wrappers, measures the CPU time of the main thread and of
# the plugin's sender thread with time.thread_time(), and, when
# TESTOQA_BENCH_CPROFILE is set, writes a cProfile profile of each thread.
# Thread.run is wrapped because cProfile profiles only the thread that enabled it.
PROFILE_LAUNCHER = """
import cProfile, json, os, resource, sys, threading, time
import pytest

out = os.environ["TESTOQA_BENCH_PROFILE_DIR"]
profiling = bool(os.environ.get("TESTOQA_BENCH_CPROFILE"))
threads = {}
marks = {}
original_run = threading.Thread.run

def mark(name):
    usage = resource.getrusage(resource.RUSAGE_SELF)
    marks[name] = [time.perf_counter(), time.thread_time(), usage.ru_maxrss]

class PhaseProbe:
    @pytest.hookimpl(wrapper=True)
    def pytest_collection(self, session):
        mark("collection")
        result = yield
        mark("tests")
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session, exitstatus):
        mark("session end")
        result = yield
        mark("exit")
        return result

def measured_run(self):
    if self.name != "testoqa-sender":
        return original_run(self)
    profiler = cProfile.Profile() if profiling else None
    if profiler:
        profiler.enable()
    started = time.thread_time()
    try:
        return original_run(self)
    finally:
        threads["sender"] = time.thread_time() - started
        if profiler:
            profiler.disable()
            profiler.dump_stats(os.path.join(out, "sender.prof"))

threading.Thread.run = measured_run
profiler = cProfile.Profile() if profiling else None
if profiler:
    profiler.enable()
mark("start-up")
status = pytest.main(sys.argv[1:], plugins=[PhaseProbe()])
mark("end")
if profiler:
    profiler.disable()
    profiler.dump_stats(os.path.join(out, "main.prof"))
threads["main"] = marks["end"][1]
with open(os.path.join(out, "threads.json"), "w") as file:
    json.dump({"threads": threads, "marks": marks}, file)
sys.exit(int(status))
"""
# Phases between the launcher's marks: (name, first mark, next mark).
PHASES = (
    ("start-up", "start-up", "collection"),
    ("collection", "collection", "tests"),
    ("tests", "tests", "session end"),
    ("session end", "session end", "exit"),
    # pytest's terminal summary is written here, by a hook wrapper outside the probe's.
    ("summary", "exit", "end"),
)


@dataclass(frozen=True)
class Probe:
    """Measurements the launcher took in one pytest process."""

    sample: Sample
    sender_cpu: float
    # By phase: wall seconds, main-thread CPU seconds, and peak RSS in MB at the phase's end.
    phases: dict[str, tuple[float, float, float]]


def profiled_run(
    variant: Variant,
    suite: Path,
    outputs: Path,
    server: LocalServer,
    manifest: dict[str, Any],
    timeout: float,
    *,
    cprofile: bool,
) -> Probe:
    """Run one pytest process of variant under the launcher and return its measurements."""
    outputs.mkdir(parents=True, exist_ok=True)
    command, env = variant_command(variant, 0, outputs, server)
    command[1:3] = ["-c", PROFILE_LAUNCHER]  # replaces "-m pytest"
    env["TESTOQA_BENCH_PROFILE_DIR"] = str(outputs)
    if cprofile:
        env["TESTOQA_BENCH_CPROFILE"] = "1"
    sample = run_measured(command, suite, env, outputs / "output.txt", timeout)
    problem = check_sample(sample, variant, manifest)
    if problem:
        raise BenchmarkError(f"{variant.name}: {problem}")
    measured = json.loads((outputs / "threads.json").read_text())
    marks = measured["marks"]
    phases = {}
    for name, first, following in PHASES:
        wall = marks[following][0] - marks[first][0]
        cpu = marks[following][1] - marks[first][1]
        phases[name] = (wall, cpu, marks[following][2] / 1024)
    return Probe(sample, measured["threads"].get("sender", 0.0), phases)


def print_phases(tests: int, plain: list[Probe], testoqa: list[Probe]) -> None:
    """Print medians by phase for plain and testoqa, and the plugin's extra cost per test."""

    def median(probes: list[Probe], phase: str, index: int) -> float:
        return statistics.median(probe.phases[phase][index] for probe in probes)

    print(
        "| phase | plain wall (s) | testoqa wall (s) | plain CPU (s) | testoqa CPU (s) "
        "| CPU over plain (µs/test) | plain peak RSS (MB) | testoqa peak RSS (MB) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, _, _ in PHASES:
        walls = median(plain, name, 0), median(testoqa, name, 0)
        cpus = median(plain, name, 1), median(testoqa, name, 1)
        rss = median(plain, name, 2), median(testoqa, name, 2)
        print(
            f"| {name} (main thread) | {walls[0]:.2f} | {walls[1]:.2f} | {cpus[0]:.2f} "
            f"| {cpus[1]:.2f} | {(cpus[1] - cpus[0]) / tests * 1e6:+.0f} "
            f"| {rss[0]:.0f} | {rss[1]:.0f} |"
        )
    sender = statistics.median(probe.sender_cpu for probe in testoqa)
    print(f"| sender thread | | | | {sender:.2f} | {sender / tests * 1e6:+.0f} | | |")
    process = [
        statistics.median(probe.sample.cpu for probe in probes) for probes in (plain, testoqa)
    ]
    walls = [
        statistics.median(probe.sample.wall for probe in probes) for probes in (plain, testoqa)
    ]
    print(
        f"| whole process | {walls[0]:.2f} | {walls[1]:.2f} | {process[0]:.2f} | {process[1]:.2f} "
        f"| {(process[1] - process[0]) / tests * 1e6:+.0f} | | |"
    )
    print()


def print_profile(path: Path, title: str, top: int, only_plugin: bool) -> None:
    """Print the top functions of a cProfile file by cumulative time."""
    entries = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    plugin_dir = f"{os.sep}pytest_testoqa{os.sep}"
    rows = []
    for (filename, line, function), (_, calls, own, cumulative, _) in entries.items():
        if only_plugin and plugin_dir not in filename:
            continue
        short = filename.split(plugin_dir, 1)[-1] if plugin_dir in filename else filename
        rows.append((cumulative, own, calls, f"{short[-60:]}:{line}({function})"))
    rows.sort(reverse=True)
    print(title)
    print(f"{'cumulative s':>12} {'own s':>8} {'calls':>8}  function")
    for cumulative, own, calls, name in rows[:top]:
        print(f"{cumulative:12.3f} {own:8.3f} {calls:8d}  {name}")
    print()


def profile(tests: int, rounds: int, workdir: Path, timeout: float, top: int) -> None:
    """Split the plugin's cost by phase and thread, then profile both threads with cProfile.

    Without xdist only, so every test runs in the one measured process.
    """
    suite = workdir / f"suite-{tests}"
    suite_generator.generate(suite, tests)
    manifest = json.loads((suite / suite_generator.MANIFEST_NAME).read_text())
    plain, testoqa = VARIANTS[0], VARIANTS[-1]
    probes: dict[str, list[Probe]] = {"plain": [], "testoqa": []}
    with local_server(sys.executable, workdir / "server-profile") as server:
        # Round 0 warms the bytecode cache and the server and is not counted.
        for round_number in range(rounds + 1):
            base = workdir / f"threads-{round_number}"
            for variant in (plain, testoqa):
                probe = profiled_run(
                    variant, suite, base / variant.name, server, manifest, timeout, cprofile=False
                )
                if round_number:
                    probes[variant.name].append(probe)
        profiled = workdir / "cprofile"
        profiled_run(testoqa, suite, profiled, server, manifest, timeout, cprofile=True)

    print(f"\n{tests} tests without xdist, medians of {rounds} rounds, without cProfile:\n")
    print_phases(tests, probes["plain"], probes["testoqa"])
    print_profile(
        profiled / "main.prof",
        f"Plugin functions in the main thread, one cProfile run of {tests} tests:",
        top,
        only_plugin=True,
    )
    print_profile(
        profiled / "sender.prof",
        "All functions in the sender thread, same run:",
        top,
        only_plugin=False,
    )
    print(
        "cProfile measures wall time per function: time the main thread waits for "
        "the GIL while the sender thread runs counts against the function it was in."
    )


# --- entry point ----------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[2_000, 10_000], help="numbers of tests"
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[0, 2],
        help="xdist settings to measure; 0 runs without -n (default: 0 2)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds one pytest process may take"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of timing, split the plugin's CPU time between its threads and "
        "profile both with cProfile, on the first size without xdist",
    )
    parser.add_argument("--top", type=int, default=25, help="functions listed by --profile")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.rounds < 1 or min(args.sizes) < 1 or min(args.workers) < 0:
        parser.error("--rounds and --sizes must be at least 1, --workers at least 0")

    workdir = Path(tempfile.mkdtemp(prefix="testoqa-overhead-"))
    try:
        print("\n".join(describe_machine()), flush=True)
        if args.profile:
            profile(args.sizes[0], args.rounds, workdir, args.timeout, args.top)
            return 0
        rows: list[Row] = []
        server_cpu: dict[tuple[int, int], float] = {}
        problems: list[str] = []
        for tests in args.sizes:
            for workers in args.workers:
                measured = measure_configuration(
                    tests, workers, args.rounds, workdir, args.timeout
                )
                rows += summarize(measured)
                problems += measured.problems
                if measured.server_cpu:
                    server_cpu[tests, workers] = statistics.median(measured.server_cpu)
                # Print each configuration as it ends, so a later failure keeps it.
                print(f"\n{format_table(summarize(measured))}", flush=True)
        print("\nAll configurations:\n")
        print(format_table(rows))
        print()
        for (tests, workers), seconds in server_cpu.items():
            print(
                f"server CPU per testoqa run, {tests} tests, -n {workers}: "
                f"{seconds:.2f} s median ({seconds / tests * 1e6:.0f} µs per test)"
            )
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
        print(f"load average (1, 5, 15 min) at the end: {load}")
        usage = resource.getrusage(resource.RUSAGE_SELF)
        print(f"this script's own CPU: {usage.ru_utime + usage.ru_stime:.1f} s")
        if problems:
            print(f"\n{len(problems)} problems with the delivery to the server:")
            for problem in problems:
                print(f"- {problem}")
            return 1
        return 0
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
