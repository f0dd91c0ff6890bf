"""The plugin's settings: where each comes from, how bad values are reported, when it is off."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from pytest_testoqa.ci import PROVIDERS
from pytest_testoqa.settings import OPTIONS, TOKEN_ENV
from tests.plugin.conftest import LiveServer

pytestmark = pytest.mark.timeout(180)

INNER_TIMEOUT = 120.0
ASYNCIO_INI = "asyncio_default_fixture_loop_scope = function\n"

SUITE = """
def test_one():
    pass

def test_two():
    pass
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop CI and TestoQA variables of the outer environment."""
    for variable, _ in PROVIDERS:
        monkeypatch.delenv(variable, raising=False)
    for option in OPTIONS:
        monkeypatch.delenv(option.env, raising=False)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.delenv("CI", raising=False)


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A loopback URL that refuses connections: its port is bound but never listens."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{holder.getsockname()[1]}"
    holder.close()


class ConnectionCounter:
    """A loopback listener that counts and closes every connection made to it."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        self.count = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.count += 1
            connection.close()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(10)
        self._listener.close()


@pytest.fixture
def counter() -> Iterator[ConnectionCounter]:
    server = ConnectionCounter()
    yield server
    server.stop()


def write_ini(pytester: pytest.Pytester, **values: str) -> None:
    lines = [f"{name} = {value}\n" for name, value in values.items()]
    pytester.makeini("[pytest]\n" + ASYNCIO_INI + "".join(lines))


def run_subprocess(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
) -> pytest.RunResult:
    with monkeypatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        return pytester.runpytest_subprocess(
            "--testoqa-flush-deadline", "2", *args, timeout=INNER_TIMEOUT
        )


def output_of(result: pytest.RunResult) -> str:
    return result.stdout.str() + "\n" + result.stderr.str()


# --- precedence -------------------------------------------------------------------

# Where each value comes from. The "good" value must win over the "bad" ones.
PRECEDENCE = pytest.mark.parametrize(
    "sources",
    [
        {"cli": "good", "env": "bad", "ini": "bad"},
        {"env": "good", "ini": "bad"},
        {"ini": "good"},
    ],
    ids=["cli-over-env-and-ini", "env-over-ini", "ini-only"],
)


@PRECEDENCE
def test_project_precedence(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    sources: dict[str, str],
) -> None:
    values = {"good": live_server.project, "bad": "ELSEWHERE"}
    pytester.makepyfile(test_suite=SUITE)
    ini = {"testoqa_project": values[sources["ini"]]} if "ini" in sources else {}
    write_ini(pytester, **ini)
    args = ["--testoqa-url", live_server.url]
    if "cli" in sources:
        args += ["--testoqa-project", values[sources["cli"]]]
    env = {TOKEN_ENV: live_server.token}
    if "env" in sources:
        env["TESTOQA_PROJECT"] = values[sources["env"]]

    result = run_subprocess(pytester, monkeypatch, args, env)

    assert result.ret == 0, output_of(result)
    assert f"2 executions sent to project {live_server.project}" in result.stdout.str()
    assert live_server.only_run()["totals"]["passed"] == 2


@PRECEDENCE
def test_url_precedence(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    dead_url: str,
    sources: dict[str, str],
) -> None:
    values = {"good": live_server.url, "bad": dead_url}
    pytester.makepyfile(test_suite=SUITE)
    ini = {"testoqa_url": values[sources["ini"]]} if "ini" in sources else {}
    write_ini(pytester, **ini)
    args = ["--testoqa-project", live_server.project]
    if "cli" in sources:
        args += ["--testoqa-url", values[sources["cli"]]]
    env = {TOKEN_ENV: live_server.token}
    if "env" in sources:
        env["TESTOQA_URL"] = values[sources["env"]]

    result = run_subprocess(pytester, monkeypatch, args, env)

    assert result.ret == 0, output_of(result)
    assert "results not delivered" not in result.stdout.str()
    assert live_server.only_run()["totals"]["passed"] == 2


# --- usage errors ---------------------------------------------------------------------

# (command-line arguments, environment, ini lines, pieces the error must contain)
INVALID = [
    pytest.param(
        ["--testoqa-project", "web"],
        {},
        {},
        ["--testoqa-project: invalid project key 'web'", "2 to 20 characters", "such as WEB"],
        id="project-lowercase",
    ),
    pytest.param(
        [],
        {"TESTOQA_PROJECT": "W"},
        {},
        ["$TESTOQA_PROJECT: invalid project key 'W'"],
        id="project-env-short",
    ),
    pytest.param(
        [],
        {},
        {"testoqa_project": "MY-PROJECT"},
        ["ini testoqa_project: invalid project key 'MY-PROJECT'"],
        id="project-ini-dash",
    ),
    pytest.param(
        ["--testoqa-project", "PLUG", "--testoqa-url", "ftp://127.0.0.1"],
        {},
        {},
        ["--testoqa-url: invalid URL 'ftp://127.0.0.1'", "expected http:// or https://"],
        id="url-scheme",
    ),
    pytest.param(
        ["--testoqa-project", "PLUG"],
        {"TESTOQA_URL": "127.0.0.1:8080"},
        {},
        ["$TESTOQA_URL: invalid URL '127.0.0.1:8080'"],
        id="url-env-no-scheme",
    ),
    pytest.param(
        ["--testoqa-project", "PLUG", "--testoqa-url", "http://"],
        {},
        {},
        ["--testoqa-url: invalid URL 'http://'", "and a host"],
        id="url-no-host",
    ),
    pytest.param(
        ["--testoqa-project", "PLUG", "--testoqa-timeout", "soon"],
        {},
        {},
        ["--testoqa-timeout: invalid value 'soon'", "a number from 0.1 to 600.0"],
        id="timeout-text",
    ),
    pytest.param(
        ["--testoqa-project", "PLUG", "--testoqa-timeout", "0"],
        {},
        {},
        ["--testoqa-timeout: invalid value '0'", "a number from 0.1 to 600.0"],
        id="timeout-zero",
    ),
    pytest.param(
        ["--testoqa-project", "PLUG"],
        {"TESTOQA_TIMEOUT": "nan"},
        {},
        ["$TESTOQA_TIMEOUT: invalid value 'nan'"],
        id="timeout-env-nan",
    ),
    pytest.param(
        ["--testoqa-project", "PLUG", "--testoqa-flush-deadline", "-1"],
        {},
        {},
        ["--testoqa-flush-deadline: invalid value '-1'", "a number from 0.0 to 3600.0"],
        id="deadline-negative",
    ),
    pytest.param(
        ["--testoqa-project", "PLUG"],
        {},
        {"testoqa_flush_deadline": "forever"},
        ["ini testoqa_flush_deadline: invalid value 'forever'"],
        id="deadline-ini-text",
    ),
    pytest.param(
        ["--testoqa-project", "PLUG", "--testoqa-capture-limit", "64k"],
        {},
        {},
        ["--testoqa-capture-limit: invalid value '64k'", "a number from 0 to 1048576"],
        id="capture-limit-text",
    ),
    pytest.param(
        ["--testoqa-project", "PLUG", "--testoqa-capture-limit", "2000000"],
        {},
        {},
        ["--testoqa-capture-limit: invalid value '2000000'", "a number from 0 to 1048576"],
        id="capture-limit-too-big",
    ),
    pytest.param(
        ["--testoqa-project", "PLUG"],
        {},
        {"testoqa_redact": "[unclosed"},
        ["ini testoqa_redact: invalid regular expression '[unclosed'"],
        id="redact-regex",
    ),
]


@pytest.mark.parametrize(("args", "env", "ini", "pieces"), INVALID)
def test_invalid_value_is_usage_error(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    ini: dict[str, str],
    pieces: list[str],
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    write_ini(pytester, **ini)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    result = pytester.runpytest(*args)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    error = result.stderr.str()
    for piece in pieces:
        assert piece in error
    assert not (pytester.path / ".testoqa").exists()


# --- inactive plugin ------------------------------------------------------------------


def test_no_project_is_inactive(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, counter: ConnectionCounter
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    write_ini(pytester)

    result = run_subprocess(
        pytester, monkeypatch, [], {"TESTOQA_URL": counter.url, TOKEN_ENV: "unused"}
    )

    assert result.ret == 0, output_of(result)
    assert counter.count == 0
    assert not (pytester.path / ".testoqa").exists()
    assert "TestoQA" not in result.stdout.str()


def test_no_project_ignores_bad_values(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Settings of an inactive plugin are not validated: it must cost nothing."""
    pytester.makepyfile(test_suite=SUITE)
    write_ini(pytester)

    result = run_subprocess(pytester, monkeypatch, ["--testoqa-timeout", "soon"], {})

    assert result.ret == 0, output_of(result)


def test_disabled_with_no_testoqa(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, counter: ConnectionCounter
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    write_ini(pytester)
    env = {"TESTOQA_PROJECT": "PLUG", "TESTOQA_URL": counter.url, TOKEN_ENV: "unused"}

    with monkeypatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        result = pytester.runpytest_subprocess("-p", "no:testoqa", timeout=INNER_TIMEOUT)

    assert result.ret == 0, output_of(result)
    assert counter.count == 0
    assert not (pytester.path / ".testoqa").exists()
    assert "TestoQA" not in result.stdout.str()


# --- the token ----------------------------------------------------------------------------

SECRET = "PLUG_secret-value-that-must-not-leak"


@pytest.mark.parametrize(
    "scenario", ["delivered", "outage", "rejected", "usage-error", "verbose-debug"]
)
def test_token_never_printed(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    dead_url: str,
    scenario: str,
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    write_ini(pytester)
    token = live_server.token if scenario in ("delivered", "verbose-debug") else SECRET
    url = dead_url if scenario == "outage" else live_server.url
    args = ["--testoqa-project", "PLUG", "--testoqa-url", url]
    if scenario == "usage-error":
        args += ["--testoqa-timeout", "soon"]
    if scenario == "verbose-debug":
        args += ["-vv", "--debug"]

    result = run_subprocess(pytester, monkeypatch, args, {TOKEN_ENV: token})

    assert token not in output_of(result)
    for path in pytester.path.rglob("*"):
        if path.is_file() and path.suffix in (".jsonl", ".acks", ".log"):
            assert token not in path.read_text(errors="replace"), path


def test_token_not_an_option(pytester: pytest.Pytester) -> None:
    """The token has no command-line option: it would leak into process lists and CI logs."""
    write_ini(pytester)

    result = pytester.runpytest("--help")

    assert "--testoqa-token" not in result.stdout.str()
    assert "--testoqa-project" in result.stdout.str()
