"""The ``testoqa-quickstart`` command: a server with a demo project and example runs.

It creates (or reuses) a SQLite database in a local folder, the project
DEMO, a user who can sign in and a reporter token. Then it starts the server
on 127.0.0.1 and runs the example suite in ``examples/demo`` with the plugin
four times on two branches. It prints where to sign in and serves until
Ctrl-C. Running it again reuses the database, the user and the token, and
adds new runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import importlib.util
import json
import os
import secrets
import signal
import sys
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from aiohttp import web
from sqlalchemy.exc import OperationalError

from ingest_server.cli import int_in_range
from ingest_server.config import Settings
from ingest_server.db.migrate import upgrade
from ingest_server.logs import configure_logging
from ingest_server.services.container import Services
from ingest_server.services.context import OPERATOR, RequestContext
from ingest_server.services.errors import Conflict, ServiceError, Unauthenticated
from ingest_server.web.app import create_app

PROJECT_KEY = "DEMO"
PROJECT_NAME = "Demo shop"
EMAIL = "demo@example.com"
TOKEN_NAME = "quickstart"  # noqa: S105 - the token's label, not its secret
HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_DATA_DIR = ".testoqa-demo"
CREDENTIALS_FILE = "credentials.json"
# The suite's pytest exits with 1 because the demo has failing tests on
# purpose, and 0 is fine too. Anything else means the suite did not run.
SUITE_EXIT_OK = (0, 1)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130

T = TypeVar("T")


@dataclass(frozen=True)
class Round:
    """One run of the example suite, reported as if a CI job ran it on this branch."""

    number: int
    branch: str
    commit: str


# Three runs on main give the reports a fixed test, a new failure and an
# outcome that flips, since the flaky report lists flips only in three runs
# of a branch. The run on a feature branch is for the branch filters. The
# newest run is on main, because the flaky report shows the newest run's
# branch by default. The commits are made-up ids that look like git's.
ROUNDS = (
    Round(1, "main", "4be1c2d3e5f60718293a4b5c6d7e8f9012345678"),
    Round(2, "feature/faster-checkout", "d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6"),
    Round(3, "main", "9c0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6071829"),
    Round(4, "main", "2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d"),
)


class QuickstartError(Exception):
    """A failure the user can fix, printed without a traceback."""


class Stopped(Exception):
    """Ctrl-C or SIGTERM arrived before the quickstart finished."""


@dataclass
class Credentials:
    """Sign-in data kept in the data folder, so that a second run can print it again."""

    email: str = EMAIL
    password: str | None = None
    token: str | None = None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="testoqa-quickstart",
        description="Start a TestoQA server with a demo project, a user and example runs.",
    )
    parser.add_argument(
        "--port",
        type=int_in_range("port", 0, 65535),
        default=DEFAULT_PORT,
        help=f"TCP port on {HOST}, or 0 for a free port (default: %(default)s)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(DEFAULT_DATA_DIR),
        help="folder for the SQLite database, the credentials and the logs (default: %(default)s)",
    )
    parser.add_argument(
        "--rounds",
        type=int_in_range("number of rounds", 0, len(ROUNDS)),
        default=len(ROUNDS),
        help="how many times to run the example suite (default: %(default)s)",
    )
    parser.add_argument(
        "--no-serve",
        action="store_true",
        help="stop the server and exit once the example runs are stored",
    )
    return parser


# --- credentials --------------------------------------------------------------


def load_credentials(path: Path) -> Credentials:
    """Read the credentials file, or return empty credentials if it is missing or invalid."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Credentials()
    if not isinstance(data, dict):
        return Credentials()
    password, token = data.get("password"), data.get("token")
    return Credentials(
        password=password if isinstance(password, str) else None,
        token=token if isinstance(token, str) else None,
    )


def save_credentials(path: Path, credentials: Credentials) -> None:
    """Write the credentials readable by the owner only, since they hold a password and a token."""
    data = {
        "email": credentials.email,
        "password": credentials.password,
        "token": credentials.token,
    }
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # The mode given to open applies only when the file is created.
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump(data, file, indent=2)
        file.write("\n")


# --- set-up -------------------------------------------------------------------


def prepare_data_dir(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "logs").mkdir(exist_ok=True)
    # Keeps the demo's database, password and token out of git when the
    # folder is inside a repository.
    (data_dir / ".gitignore").write_text("*\n", encoding="utf-8")


async def open_database(services: Services) -> str:
    """Create or upgrade the schema and return what was done, for the output."""
    before = await services.schema_state()
    if before.is_current:
        return "schema current"
    await upgrade(services.database)
    return "schema created" if before.empty else "schema upgraded"


async def _project_context(services: Services) -> RequestContext:
    scope = await services.auth.resolve_scope(OPERATOR, PROJECT_KEY)
    if scope is None:
        raise QuickstartError(f"project {PROJECT_KEY} disappeared while the quickstart ran")
    return RequestContext(
        request_id="quickstart", principal=OPERATOR, project_key=PROJECT_KEY, project=scope
    )


async def seed(services: Services, credentials_path: Path) -> tuple[Credentials, str, list[str]]:
    """Create what is missing of the project, the user, the membership and the token.

    Returns the credentials to print, the reporter token and one line per
    step for the output.
    """
    operator = RequestContext(request_id="quickstart", principal=OPERATOR)
    credentials = load_credentials(credentials_path)
    steps: list[str] = []
    try:
        await services.admin.create_project(operator, PROJECT_KEY, PROJECT_NAME)
        steps.append(f"Project {PROJECT_KEY}: created")
    except Conflict:
        steps.append(f"Project {PROJECT_KEY}: already exists, reused")
    steps.append(await _ensure_user(services, operator, credentials, credentials_path))
    project = await _project_context(services)
    await services.admin.set_member(project, EMAIL, "admin")
    token, step = await _ensure_token(services, project, credentials.token)
    credentials.token = token
    steps.append(step)
    save_credentials(credentials_path, credentials)
    return credentials, token, steps


async def _ensure_user(
    services: Services, operator: RequestContext, credentials: Credentials, path: Path
) -> str:
    password = credentials.password or secrets.token_urlsafe(12)
    try:
        await services.admin.create_user(operator, EMAIL, password)
    except Conflict:
        if credentials.password is None:
            return (
                f"User {EMAIL}: already exists, but its password is not in {shown(path)}; "
                "delete the data folder to start over with a new password"
            )
        return f"User {EMAIL}: already exists, password read from {shown(path)}"
    credentials.password = password
    return f"User {EMAIL}: created, password saved in {shown(path)}"


async def _ensure_token(
    services: Services, project: RequestContext, stored: str | None
) -> tuple[str, str]:
    """Return the stored token while the server accepts it, else a new one."""
    if stored is not None:
        try:
            await services.auth.authenticate_token(stored)
        except Unauthenticated:
            pass
        else:
            return stored, "Reporter token: reused"
    issued = await services.admin.create_token(project, TOKEN_NAME, "reporter")
    return issued.secret, f"Reporter token {issued.token_id}: created"


# --- the example suite --------------------------------------------------------


def find_suite() -> Path:
    """Return examples/demo of the current folder, else of the source tree of this package."""
    candidates = [
        Path.cwd() / "examples" / "demo",
        Path(__file__).resolve().parent.parent / "examples" / "demo",
    ]
    for candidate in candidates:
        if (candidate / "conftest.py").is_file():
            return candidate
    raise QuickstartError(
        "the example suite was not found in "
        + " or ".join(str(candidate) for candidate in candidates)
        + ": run the quickstart from the top folder of a TestoQA clone"
    )


def check_suite_requirements() -> None:
    if importlib.util.find_spec("pytest_rerunfailures") is None:
        raise QuickstartError(
            "pytest-rerunfailures is not installed, and the example suite needs it: "
            f"{sys.executable} -m pip install -e '.[server,examples]'"
        )


def suite_environment(round_: Round, base_url: str, token: str, data_dir: Path) -> dict[str, str]:
    """Return the environment of one suite run: the plugin's settings and made-up CI data."""
    ignored = ("TESTOQA_", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    env = {name: value for name, value in os.environ.items() if not name.startswith(ignored)}
    env.update(
        {
            "TESTOQA_URL": base_url,
            "TESTOQA_TOKEN": token,
            "TESTOQA_RUN_NAME": f"demo run {round_.number} on {round_.branch}",
            "TESTOQA_SPOOL_DIR": str(data_dir / "spool"),
            "DEMO_ROUND": str(round_.number),
            "PYTHONDONTWRITEBYTECODE": "1",
            # The plugin reads branch and commit from a CI service's variables,
            # so GitHub Actions' are set here. The ones below that would
            # override the branch, or add a build link or a run key, are empty.
            "GITHUB_ACTIONS": "true",
            "GITHUB_REF": f"refs/heads/{round_.branch}",
            "GITHUB_REF_NAME": round_.branch,
            "GITHUB_HEAD_REF": "",
            "GITHUB_SHA": round_.commit,
            "GITHUB_JOB": "demo",
            # No run id: each session is its own run, never joined by a run key.
            "GITHUB_RUN_ID": "",
            "GITHUB_SERVER_URL": "",
            "GITHUB_REPOSITORY": "",
        }
    )
    return env


async def run_suite(
    round_: Round, suite: Path, env: dict[str, str], log_path: Path
) -> tuple[int, str]:
    """Run the example suite once and return pytest's exit status and its summary line."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        # The demo runs serially, and the same way whether or not
        # pytest-xdist is installed in this environment.
        "-p",
        "no:xdist",
        "--testoqa-project",
        PROJECT_KEY,
        str(suite),
    ]
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *command, cwd=suite, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT
        )
        try:
            status = await process.wait()
        except asyncio.CancelledError:
            if process.returncode is None:
                process.terminate()
                await process.wait()
            raise
    return status, _summary_line(log_path)


def _summary_line(log_path: Path) -> str:
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip("= ") if lines else "no output"


def _error_line(log_path: Path) -> str | None:
    """Return the last usage error or internal error line of a pytest log, if there is one."""
    errors = [
        line.strip()
        for line in log_path.read_text(errors="replace").splitlines()
        if line.startswith(("ERROR: ", "INTERNALERROR> ")) and line.strip() != "INTERNALERROR>"
    ]
    return errors[-1] if errors else None


async def newest_run_id(services: Services) -> str | None:
    ctx = await _project_context(services)
    page = await services.runs.list(ctx, branch=None, status=None, limit=1, cursor=None)
    return str(page.items[0].id) if page.items else None


async def run_rounds(
    services: Services, rounds: Sequence[Round], base_url: str, token: str, data_dir: Path
) -> list[tuple[Round, str]]:
    """Run the example suite once per round and return each round with its run id."""
    if not rounds:
        return []
    suite = find_suite()
    check_suite_requirements()
    logs = shown(data_dir / "logs")
    times = "once" if len(rounds) == 1 else f"{len(rounds)} times"
    print(f"Running the example suite in {shown(suite)} {times} (logs in {logs}):")
    runs: list[tuple[Round, str]] = []
    for round_ in rounds:
        before = await newest_run_id(services)
        env = suite_environment(round_, base_url, token, data_dir)
        log_path = data_dir / "logs" / f"run-{round_.number}.log"
        status, summary = await run_suite(round_, suite, env, log_path)
        if status not in SUITE_EXIT_OK:
            error = _error_line(log_path)
            raise QuickstartError(
                f"pytest stopped with exit status {status} in run {round_.number}"
                + (f" ({error})" if error else "")
                + f": see {shown(log_path)}"
            )
        after = await newest_run_id(services)
        if after is None or after == before:
            raise QuickstartError(
                f"run {round_.number} reached no report on the server: see the TestoQA "
                f"section at the end of {shown(log_path)}"
            )
        runs.append((round_, after))
        print(f"  run {round_.number}, branch {round_.branch}: {summary}", flush=True)
    return runs


# --- output -------------------------------------------------------------------


def shown(path: Path) -> str:
    """Return path relative to the current folder when it is inside it, for shorter output."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def print_access(base_url: str, runs: list[tuple[Round, str]], credentials: Credentials) -> None:
    project_url = f"{base_url}/projects/{PROJECT_KEY}/runs"
    print()
    print(f"Reports of project {PROJECT_KEY}: {project_url}")
    for round_, run_id in runs:
        print(f"  run {round_.number} ({round_.branch}): {project_url}/{run_id}")
    print(f"Sign in at {base_url}/login")
    print(f"  email:    {credentials.email}")
    print(f"  password: {credentials.password or 'unknown (see above)'}")
    # The pytest of this environment has the plugin; another one on PATH may not.
    print("Report your own pytest runs to this server, from your project's folder:")
    print(
        f"  TESTOQA_URL={base_url} TESTOQA_TOKEN={credentials.token} "
        f"{sys.executable} -m pytest --testoqa-project {PROJECT_KEY}"
    )


def print_restart_hint(database_path: Path, port: int) -> None:
    server = Path(sys.executable).parent / "testoqa-server"
    program = shown(server) if server.exists() else "testoqa-server"
    url = f"sqlite+aiosqlite:///{shown(database_path)}"
    print()
    print("The server stopped because of --no-serve. Serve the demo again with:")
    print(f"  {program} serve --database-url {url} --port {port or DEFAULT_PORT}")


# --- the whole flow -----------------------------------------------------------


async def _unless_stopped(stop: asyncio.Event, work: Awaitable[T]) -> T:
    """Await work, or cancel it and raise Stopped when stop is set first."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(stop.wait())
    await asyncio.wait((task, waiter), return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    raise Stopped


def _install_stop_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)


async def _start_site(runner: web.AppRunner, port: int) -> str:
    site = web.TCPSite(runner, HOST, port)
    try:
        await site.start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise QuickstartError(
                f"port {port} on {HOST} is already in use, perhaps by an earlier quickstart "
                "or another server: stop that program, or choose another port with --port"
            ) from exc
        raise QuickstartError(f"cannot listen on {HOST}:{port}: {exc.strerror}") from exc
    bound_port = runner.addresses[0][1]
    return f"http://{HOST}:{bound_port}"


async def quickstart(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    _install_stop_handlers(stop)
    # The suite runs in its own folder, so every path handed to it is absolute.
    args.data_dir = data_dir = args.data_dir.resolve()
    prepare_data_dir(data_dir)
    database_path = (data_dir / "testoqa.db").resolve()
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{database_path}", host=HOST, port=args.port
    )
    services = Services(settings)
    runner = web.AppRunner(create_app(services), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        return await _serve_demo(args, services, runner, stop, database_path)
    finally:
        # Closing the runner also closes the database, through the app's cleanup.
        await runner.cleanup()


async def _serve_demo(
    args: argparse.Namespace,
    services: Services,
    runner: web.AppRunner,
    stop: asyncio.Event,
    database_path: Path,
) -> int:
    # The port is taken first, so that a busy port stops the quickstart
    # before it changes anything.
    base_url = await _start_site(runner, args.port)
    print(f"Database: {shown(database_path)} ({await open_database(services)})")
    credentials, token, steps = await seed(services, args.data_dir / CREDENTIALS_FILE)
    print("\n".join(steps))
    print(f"Server listening on {base_url}", flush=True)
    rounds = ROUNDS[: args.rounds]
    runs = await _unless_stopped(
        stop, run_rounds(services, rounds, base_url, token, args.data_dir)
    )
    print_access(base_url, runs, credentials)
    if args.no_serve:
        print_restart_hint(database_path, args.port)
        return EXIT_OK
    print("\nServing until Ctrl-C.", flush=True)
    await stop.wait()
    print("Stopping the server.", flush=True)
    return EXIT_OK


def _database_message(exc: OperationalError) -> str:
    if "locked" in str(exc.orig):
        return (
            "the database is locked by another program, perhaps a quickstart or server "
            "using the same --data-dir: stop it and run the quickstart again"
        )
    return f"database error: {exc.orig}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Only warnings and errors of the server reach the terminal, so the
    # quickstart's own lines stay readable.
    configure_logging("WARNING")
    try:
        return asyncio.run(quickstart(args))
    except QuickstartError as exc:
        print(f"testoqa-quickstart: error: {exc}", file=sys.stderr)
    except ServiceError as exc:
        print(f"testoqa-quickstart: error: {exc.message}", file=sys.stderr)
    except OperationalError as exc:
        print(f"testoqa-quickstart: error: {_database_message(exc)}", file=sys.stderr)
    except (Stopped, KeyboardInterrupt):
        print("testoqa-quickstart: stopped before the demo was ready", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
