"""``testoqa upload``: sends spooled results once, explains bad input, and tolerates crashes.

The spool files come from real inner pytest sessions whose server was
down (a loopback port that refuses connections).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pytest_testoqa.ci import PROVIDERS
from pytest_testoqa.settings import OPTIONS, TOKEN_ENV
from tests.plugin.conftest import LiveServer

pytestmark = pytest.mark.timeout(180)

INNER_TIMEOUT = 120.0
COMMAND_TIMEOUT = 60.0

SUITE = """
import pytest

def test_pass():
    pass

def test_fail():
    assert 1 == 2

@pytest.mark.skip(reason="not today")
def test_skip():
    pass
"""
SUITE_EXECUTIONS = 3


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, pytester: pytest.Pytester) -> None:
    """Drop outer CI and TestoQA variables and set pytest-asyncio's loop scope."""
    for variable, _ in PROVIDERS:
        monkeypatch.delenv(variable, raising=False)
    for option in OPTIONS:
        monkeypatch.delenv(option.env, raising=False)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.delenv("CI", raising=False)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A loopback URL that refuses connections: its port is bound but never listens."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{holder.getsockname()[1]}"
    holder.close()


def make_spool(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    token: str = "unused",  # noqa: S107 - a token the dead server never checks
    spool: Path | None = None,
) -> Path:
    """Run SUITE against url, which must fail, and return the spool directory it left."""
    pytester.makepyfile(test_suite=SUITE)
    args = ["--testoqa-project", "PLUG", "--testoqa-url", url, "--testoqa-flush-deadline", "1"]
    if spool is not None:
        args += ["--testoqa-spool-dir", str(spool)]
    with monkeypatch.context() as patch:
        patch.setenv(TOKEN_ENV, token)
        result = pytester.runpytest_subprocess(*args, timeout=INNER_TIMEOUT)
    result.assert_outcomes(passed=1, failed=1, skipped=1)
    directory = spool or pytester.path / ".testoqa" / "spool"
    assert spool_files(directory), result.stdout.str()
    return directory


def spool_files(spool: Path) -> list[Path]:
    return sorted(spool.rglob("*.jsonl")) if spool.exists() else []


def only_spool_file(spool: Path) -> Path:
    files = spool_files(spool)
    assert len(files) == 1, files
    return files[0]


def upload(
    *args: str | Path, token: str | None = None, env: dict[str, str] | None = None, cwd: Path
) -> subprocess.CompletedProcess[str]:
    """Run ``testoqa upload`` in cwd with the token, if any, in the environment only."""
    environment = {k: v for k, v in os.environ.items() if k not in ("TESTOQA_URL", TOKEN_ENV)}
    if token is not None:
        environment[TOKEN_ENV] = token
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pytest_testoqa.upload", "upload", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        env=environment,
        cwd=cwd,
        check=False,
    )


def stored_executions(live_server: LiveServer) -> int:
    return sum(len(live_server.executions(run["id"])) for run in live_server.runs())


# --- dry run and usage errors --------------------------------------------------


def test_dry_run_sends_nothing(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    dead_url: str,
) -> None:
    spool = make_spool(pytester, monkeypatch, dead_url)
    path = only_spool_file(spool)
    before = path.read_bytes()

    done = upload(
        spool, "--url", live_server.url, "--dry-run", token=live_server.token, cwd=pytester.path
    )

    assert done.returncode == 0, done.stderr
    assert f"{path}: would send " in done.stdout
    assert f"{SUITE_EXECUTIONS} executions" in done.stdout
    assert f"to project PLUG at {live_server.url}" in done.stdout
    assert live_server.runs() == []
    assert path.read_bytes() == before


def test_dry_run_needs_no_token(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, dead_url: str
) -> None:
    spool = make_spool(pytester, monkeypatch, dead_url)

    done = upload(spool, "--dry-run", cwd=pytester.path)

    assert done.returncode == 0, done.stderr
    assert f"to project PLUG at {dead_url}" in done.stdout


def test_missing_token(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    dead_url: str,
) -> None:
    spool = make_spool(pytester, monkeypatch, dead_url)
    before = only_spool_file(spool).read_bytes()

    done = upload(spool, "--url", live_server.url, cwd=pytester.path)

    assert done.returncode == 2
    assert "set $TESTOQA_TOKEN to a reporter token" in done.stderr
    assert live_server.runs() == []
    assert only_spool_file(spool).read_bytes() == before


def test_nonexistent_path(pytester: pytest.Pytester, live_server: LiveServer) -> None:
    missing = pytester.path / "no-such-spool"

    done = upload(missing, "--url", live_server.url, token=live_server.token, cwd=pytester.path)

    assert done.returncode == 2
    assert f"'{missing}'" in done.stderr
    assert "does not exist" in done.stderr


def test_empty_directory(pytester: pytest.Pytester, live_server: LiveServer) -> None:
    empty = pytester.mkdir("empty-spool")

    done = upload(empty, "--url", live_server.url, token=live_server.token, cwd=pytester.path)

    assert done.returncode == 0, done.stderr
    assert f"Nothing to upload: no spool files found in {empty}" in done.stdout


# --- corrupt spool files ------------------------------------------------------------


def _not_json(lines: list[str]) -> list[str]:
    return [*lines[:2], "{this is not json", *lines[3:]]


def _wrong_version(lines: list[str]) -> list[str]:
    header = json.loads(lines[0])
    header["body"]["version"] = 99
    return [json.dumps(header), *lines[1:]]


def _no_header(lines: list[str]) -> list[str]:
    return lines[1:]


@pytest.mark.parametrize(
    ("corrupt", "reason"),
    [
        (_not_json, ":3: not a JSON line"),
        (_wrong_version, ": spool version 99 is not supported; this plugin reads version 1"),
        (_no_header, ": no header line; this is not a TestoQA spool file"),
    ],
    ids=["not-json", "wrong-version", "no-header"],
)
def test_corrupt_file(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    dead_url: str,
    corrupt: Callable[[list[str]], list[str]],
    reason: str,
) -> None:
    spool = make_spool(pytester, monkeypatch, dead_url)
    path = only_spool_file(spool)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(corrupt(lines)) + "\n")

    done = upload(spool, "--url", live_server.url, token=live_server.token, cwd=pytester.path)

    assert done.returncode == 1
    assert f"testoqa upload: error: {path}{reason}" in done.stderr
    assert "Traceback" not in done.stderr
    assert path.exists()


def test_corrupt_file_beside_good_one(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    dead_url: str,
) -> None:
    spool = make_spool(pytester, monkeypatch, dead_url)
    good = only_spool_file(spool)
    bad = spool / "aaa-corrupt" / "main.jsonl"
    bad.parent.mkdir()
    bad.write_text("garbage\n")

    done = upload(spool, "--url", live_server.url, token=live_server.token, cwd=pytester.path)

    assert done.returncode == 1
    assert f"{bad}:1: not a JSON line" in done.stderr
    assert stored_executions(live_server) == SUITE_EXECUTIONS
    assert not good.exists()
    assert bad.exists()


def test_truncated_last_line_tolerated(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    dead_url: str,
) -> None:
    """A crash mid-write leaves a partial last line: the events before it still upload."""
    spool = make_spool(pytester, monkeypatch, dead_url)
    path = only_spool_file(spool)
    lines = path.read_text().splitlines()
    kinds = [json.loads(line)["kind"] for line in lines]
    assert kinds[-2:] == ["execution", "finish"], kinds
    # The process died while writing its last execution: no finish, half a line.
    last = lines[-2]
    path.write_text("\n".join(lines[:-2]) + "\n" + last[: len(last) // 2])

    done = upload(spool, "--url", live_server.url, token=live_server.token, cwd=pytester.path)

    assert done.returncode == 0, done.stderr
    assert f"{SUITE_EXECUTIONS - 1} executions stored" in done.stdout
    assert stored_executions(live_server) == SUITE_EXECUTIONS - 1
    assert spool_files(spool) == []


# --- delivery -------------------------------------------------------------------------


def test_reupload_is_idempotent(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    dead_url: str,
) -> None:
    spool = make_spool(pytester, monkeypatch, dead_url)
    backup = pytester.path / "backup"
    shutil.copytree(spool, backup)

    first = upload(spool, "--url", live_server.url, token=live_server.token, cwd=pytester.path)
    again = upload(backup, "--url", live_server.url, token=live_server.token, cwd=pytester.path)

    assert first.returncode == 0, first.stderr
    assert f"{SUITE_EXECUTIONS} executions stored, 0 already stored" in first.stdout
    assert spool_files(spool) == []
    assert again.returncode == 0, again.stderr
    assert f"0 executions stored, {SUITE_EXECUTIONS} already stored" in again.stdout
    assert len(live_server.runs()) == 1
    assert stored_executions(live_server) == SUITE_EXECUTIONS
    assert spool_files(backup) == []


def test_default_path_and_spool_url(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, live_server: LiveServer
) -> None:
    """Without arguments, upload reads .testoqa/spool and the URL each spool file records."""
    spool = make_spool(pytester, monkeypatch, live_server.url, token="revoked-or-mistyped")

    done = upload(token=live_server.token, cwd=pytester.path)

    assert done.returncode == 0, done.stderr
    assert stored_executions(live_server) == SUITE_EXECUTIONS
    assert live_server.only_run()["status"] == "finished"
    assert spool_files(spool) == []


def test_url_from_environment(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    dead_url: str,
) -> None:
    spool = make_spool(pytester, monkeypatch, dead_url)

    done = upload(
        spool, token=live_server.token, env={"TESTOQA_URL": live_server.url}, cwd=pytester.path
    )

    assert done.returncode == 0, done.stderr
    assert stored_executions(live_server) == SUITE_EXECUTIONS


def test_server_down_keeps_spool(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, dead_url: str
) -> None:
    spool = make_spool(pytester, monkeypatch, dead_url)
    before = only_spool_file(spool).read_bytes()

    done = upload(spool, token="unused", cwd=pytester.path)

    assert done.returncode == 1
    assert "not delivered: server unreachable" in done.stderr
    assert only_spool_file(spool).read_bytes() == before


def test_revoked_token_keeps_spool(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    dead_url: str,
) -> None:
    spool = make_spool(pytester, monkeypatch, dead_url)

    done = upload(spool, "--url", live_server.url, token="not-a-token", cwd=pytester.path)

    assert done.returncode == 1
    assert "not delivered: 401 unauthenticated" in done.stderr
    assert "not-a-token" not in done.stdout + done.stderr
    assert len(spool_files(spool)) == 1
