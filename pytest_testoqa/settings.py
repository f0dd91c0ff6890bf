"""The plugin's settings: each has a CLI option, an ini key and an environment variable.

Precedence is command line, then environment, then ini file. The token is
read only from ``TESTOQA_TOKEN``: on a command line it would leak into
process lists and CI logs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

PROJECT_KEY_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]{1,19}$")
DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_SPOOL_DIR = ".testoqa/spool"
DEFAULT_TIMEOUT = 10.0
DEFAULT_FLUSH_DEADLINE = 30.0
DEFAULT_CAPTURE_LIMIT = 64 * 1024
MAX_CAPTURE_LIMIT = 1024 * 1024
TOKEN_ENV = "TESTOQA_TOKEN"  # noqa: S105 - the variable name, not a token


@dataclass(frozen=True)
class Option:
    """One setting and the three places it can come from."""

    name: str
    flag: str
    ini: str
    env: str
    help: str
    default: str | None = None


OPTIONS: tuple[Option, ...] = (
    Option(
        "project",
        "--testoqa-project",
        "testoqa_project",
        "TESTOQA_PROJECT",
        "report this session to the TestoQA project KEY; the plugin is off without it",
    ),
    Option(
        "url",
        "--testoqa-url",
        "testoqa_url",
        "TESTOQA_URL",
        "base URL of the TestoQA server",
        DEFAULT_URL,
    ),
    Option(
        "run_name",
        "--testoqa-run-name",
        "testoqa_run_name",
        "TESTOQA_RUN_NAME",
        "name of the run shown in reports",
    ),
    Option(
        "run_key",
        "--testoqa-run-key",
        "testoqa_run_key",
        "TESTOQA_RUN_KEY",
        "sessions with the same run key join one run (default: the CI build id, if any)",
    ),
    Option(
        "spool_dir",
        "--testoqa-spool-dir",
        "testoqa_spool_dir",
        "TESTOQA_SPOOL_DIR",
        "directory for results not yet delivered, relative to the rootdir",
        DEFAULT_SPOOL_DIR,
    ),
    Option(
        "timeout",
        "--testoqa-timeout",
        "testoqa_timeout",
        "TESTOQA_TIMEOUT",
        "seconds to wait for one server response",
        str(DEFAULT_TIMEOUT),
    ),
    Option(
        "flush_deadline",
        "--testoqa-flush-deadline",
        "testoqa_flush_deadline",
        "TESTOQA_FLUSH_DEADLINE",
        "seconds the end of the session waits for delivery before spooling the rest",
        str(DEFAULT_FLUSH_DEADLINE),
    ),
    Option(
        "capture_limit",
        "--testoqa-capture-limit",
        "testoqa_capture_limit",
        "TESTOQA_CAPTURE_LIMIT",
        "characters of stdout, stderr and log kept per execution; head and tail are kept",
        str(DEFAULT_CAPTURE_LIMIT),
    ),
)


@dataclass(frozen=True)
class Settings:
    """Validated settings of an active plugin."""

    project: str
    url: str
    token: str | None
    run_name: str | None
    run_key: str | None
    spool_dir: Path
    timeout: float
    flush_deadline: float
    capture_limit: int
    strict: bool
    redact: tuple[re.Pattern[str], ...] = field(default=())


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("testoqa", "report results to a TestoQA server")
    for option in OPTIONS:
        default = f" (default: {option.default})" if option.default else ""
        group.addoption(
            option.flag,
            dest=f"testoqa_{option.name}",
            metavar=option.name.upper(),
            default=None,
            help=f"{option.help}{default}; also ${option.env} or ini {option.ini}",
        )
        parser.addini(option.ini, option.help, default=None)
    group.addoption(
        "--testoqa-strict",
        action="store_true",
        default=False,
        help="fail the session with exit status 1 when results could not be delivered",
    )
    parser.addini(
        "testoqa_redact",
        "regular expressions, one per line, whose matches are replaced by [REDACTED] in "
        "output, messages and tracebacks before they are spooled or sent",
        type="linelist",
        default=[],
    )


def _raw(config: pytest.Config, option: Option) -> tuple[str | None, str]:
    """Return a setting's raw value and where it came from, for error messages."""
    cli = config.getoption(f"testoqa_{option.name}")
    if cli is not None:
        return str(cli), option.flag
    env = os.environ.get(option.env)
    if env:
        return env, f"${option.env}"
    ini = config.getini(option.ini)
    if ini:
        return str(ini), f"ini {option.ini}"
    return option.default, option.flag


def _number(value: str, source: str, minimum: float, maximum: float, kind: Any) -> Any:
    try:
        number = kind(value)
    except ValueError:
        raise pytest.UsageError(
            f"{source}: invalid value {value!r}: expected a number from {minimum} to {maximum}"
        ) from None
    if not minimum <= number <= maximum:
        raise pytest.UsageError(
            f"{source}: invalid value {value!r}: use a number from {minimum} to {maximum}"
        )
    return number


def _url(value: str, source: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise pytest.UsageError(
            f"{source}: invalid URL {value!r}: expected http:// or https:// and a host, "
            f"such as {DEFAULT_URL}"
        )
    return value.rstrip("/")


def _redactions(config: pytest.Config) -> tuple[re.Pattern[str], ...]:
    patterns = []
    for expression in config.getini("testoqa_redact"):
        try:
            patterns.append(re.compile(expression))
        except re.error as exc:
            raise pytest.UsageError(
                f"ini testoqa_redact: invalid regular expression {expression!r}: {exc}"
            ) from None
    return tuple(patterns)


def project_requested(config: pytest.Config) -> bool:
    """Return whether a project is set anywhere, without validating anything else."""
    return bool(_raw(config, OPTIONS[0])[0])


def resolve(config: pytest.Config, ci_run_key: str | None) -> Settings | None:
    """Return the settings, None when no project is set, or raise UsageError."""
    values = {option.name: _raw(config, option) for option in OPTIONS}
    project, source = values["project"]
    if not project:
        return None
    if not PROJECT_KEY_PATTERN.match(project):
        raise pytest.UsageError(
            f"{source}: invalid project key {project!r}: use 2 to 20 characters, uppercase "
            "letters, digits and '_', starting with a letter, such as WEB"
        )

    run_key, _ = values["run_key"]
    spool_dir, _ = values["spool_dir"]
    spool = Path(spool_dir or DEFAULT_SPOOL_DIR)
    if not spool.is_absolute():
        spool = config.rootpath / spool

    url, url_source = values["url"]
    timeout, timeout_source = values["timeout"]
    deadline, deadline_source = values["flush_deadline"]
    limit, limit_source = values["capture_limit"]
    return Settings(
        project=project,
        url=_url(url or DEFAULT_URL, url_source),
        token=os.environ.get(TOKEN_ENV) or None,
        run_name=values["run_name"][0] or None,
        run_key=run_key or ci_run_key,
        spool_dir=spool,
        timeout=float(_number(timeout or "", timeout_source, 0.1, 600.0, float)),
        flush_deadline=float(_number(deadline or "", deadline_source, 0.0, 3600.0, float)),
        capture_limit=int(_number(limit or "", limit_source, 0, MAX_CAPTURE_LIMIT, int)),
        strict=bool(config.getoption("testoqa_strict")),
        redact=_redactions(config),
    )
