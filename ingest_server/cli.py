"""The ``testoqa-server`` command: serve, migrate and administer projects."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from aiohttp import web
from sqlalchemy.engine import make_url

from ingest_server import __version__
from ingest_server.config import (
    DEFAULT_MAX_BATCH_ITEMS,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_LIVE_STREAMS,
    DEFAULT_WORKERS,
    MAX_WORKERS,
    Settings,
)
from ingest_server.db.engine import DEFAULT_DATABASE_URL, DatabaseURLError, validate_database_url
from ingest_server.db.migrate import upgrade
from ingest_server.logs import configure_logging, database_logger, server_logger
from ingest_server.services.admin import parse_token_id
from ingest_server.services.authz import TOKEN_ROLES, Role
from ingest_server.services.container import Services
from ingest_server.services.context import OPERATOR, RequestContext
from ingest_server.services.errors import NotFound, ServiceError
from ingest_server.web.app import create_app
from ingest_server.workers import WorkersError, serve_workers

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A failure the user can fix; printed without a traceback."""


def int_in_range(name: str, minimum: int, maximum: int) -> Callable[[str], int]:
    """Return an argparse type that accepts integers from minimum to maximum."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"invalid {name} {value!r}: expected an integer"
            ) from None
        if not minimum <= number <= maximum:
            raise argparse.ArgumentTypeError(
                f"invalid {name} {number}: use a value from {minimum} to {maximum}"
            )
        return number

    return parse


def _database_url(value: str) -> str:
    try:
        return validate_database_url(value)
    except DatabaseURLError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="testoqa-server",
        description="Run the TestoQA ingest server and administer its projects.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    database = argparse.ArgumentParser(add_help=False)
    database.add_argument(
        "--database-url",
        type=_database_url,
        default=os.environ.get("TESTOQA_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="database to use: sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB "
        f"(default: $TESTOQA_DATABASE_URL, else {DEFAULT_DATABASE_URL})",
    )

    serve = commands.add_parser("serve", parents=[database], help="run the HTTP server")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    serve.add_argument(
        "--port",
        type=int_in_range("port", 0, 65535),
        default=8080,
        help="TCP port to listen on; 0 picks a free port (default: %(default)s)",
    )
    serve.add_argument(
        "--max-batch-items",
        type=int_in_range("batch limit", 1, 100_000),
        # argparse applies type to a string default, so the variable is validated too.
        default=os.environ.get("TESTOQA_MAX_BATCH_ITEMS", str(DEFAULT_MAX_BATCH_ITEMS)),
        help="executions accepted per batch request (default: $TESTOQA_MAX_BATCH_ITEMS, "
        f"else {DEFAULT_MAX_BATCH_ITEMS})",
    )
    serve.add_argument(
        "--max-body-bytes",
        type=int_in_range("body limit", 1024, 1024**3),
        default=os.environ.get("TESTOQA_MAX_BODY_BYTES", str(DEFAULT_MAX_BODY_BYTES)),
        help="largest request body in bytes (default: $TESTOQA_MAX_BODY_BYTES, "
        f"else {DEFAULT_MAX_BODY_BYTES})",
    )
    serve.add_argument(
        "--workers",
        type=int_in_range("worker count", 1, MAX_WORKERS),
        default=os.environ.get("TESTOQA_WORKERS", str(DEFAULT_WORKERS)),
        help=f"server processes sharing the port, 1 to {MAX_WORKERS}; more than 1 needs "
        "PostgreSQL and Linux (default: $TESTOQA_WORKERS, else "
        f"{DEFAULT_WORKERS})",
    )
    serve.add_argument(
        "--max-live-streams",
        type=int_in_range("live stream limit", 1, 100_000),
        default=os.environ.get("TESTOQA_MAX_LIVE_STREAMS", str(DEFAULT_MAX_LIVE_STREAMS)),
        help="live run updates each server process streams at once; more get 503 "
        f"(default: $TESTOQA_MAX_LIVE_STREAMS, else {DEFAULT_MAX_LIVE_STREAMS})",
    )
    serve.add_argument(
        "--public-url",
        default=os.environ.get("TESTOQA_PUBLIC_URL"),
        help="base of the report links the server returns, for servers behind a proxy "
        "(default: $TESTOQA_PUBLIC_URL, else the request's own host)",
    )
    serve.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="lowest level of log lines written (default: %(default)s)",
    )
    serve.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="log line format (default: %(default)s)",
    )
    serve.set_defaults(handler=cmd_serve)

    migrate = commands.add_parser(
        "migrate", parents=[database], help="upgrade the database schema"
    )
    migrate.set_defaults(handler=cmd_migrate)

    project = commands.add_parser("create-project", parents=[database], help="create a project")
    project.add_argument("key", metavar="KEY", help="short project key, such as WEB")
    project.add_argument("--name", required=True, help="project name shown in reports")
    project.set_defaults(handler=cmd_create_project)

    user = commands.add_parser(
        "create-user", parents=[database], help="create a user who can sign in"
    )
    user.add_argument("email", metavar="EMAIL")
    user.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input instead of a prompt",
    )
    user.set_defaults(handler=cmd_create_user)

    member = commands.add_parser(
        "add-member", parents=[database], help="give a user a role on a project"
    )
    member.add_argument("email", metavar="EMAIL")
    member.add_argument("project_key", metavar="PROJECT_KEY")
    member.add_argument("--role", required=True, choices=[role.value for role in Role])
    member.set_defaults(handler=cmd_add_member)

    token = commands.add_parser(
        "create-token",
        parents=[database],
        help="create an API token for CI; prints the secret once",
    )
    token.add_argument("project_key", metavar="PROJECT_KEY")
    token.add_argument("--name", required=True, help="what the token is for, such as 'GitHub CI'")
    token.add_argument("--role", required=True, choices=[role.value for role in TOKEN_ROLES])
    token.set_defaults(handler=cmd_create_token)

    revoke = commands.add_parser("revoke-token", parents=[database], help="revoke an API token")
    revoke.add_argument("token_id", metavar="TOKEN_ID", help="token id such as WEB-3")
    revoke.set_defaults(handler=cmd_revoke_token)

    tokens = commands.add_parser("list-tokens", parents=[database], help="list a project's tokens")
    tokens.add_argument("project_key", metavar="PROJECT_KEY")
    tokens.set_defaults(handler=cmd_list_tokens)
    return parser


# --- commands -------------------------------------------------------------


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


async def _open(args: argparse.Namespace, settings: Settings | None = None) -> Services:
    """Open the database; migrate an empty SQLite file, refuse any other outdated schema."""
    services = Services(settings or Settings(database_url=args.database_url))
    try:
        state = await services.schema_state()
    except Exception as exc:
        await services.close()
        raise CommandError(
            f"cannot connect to the database {_safe_url(args.database_url)}: {exc}"
        ) from exc
    if state.is_current:
        return services
    if state.empty and services.database.is_sqlite:
        database_logger.info("creating the schema in the new SQLite database")
        await upgrade(services.database)
        return services
    await services.close()
    current = ", ".join(state.current) or "none"
    raise CommandError(
        f"the database schema is at revision {current}, but this version needs {state.head}: "
        f"run 'testoqa-server migrate --database-url {_safe_url(args.database_url)}' first"
    )


async def _operator_context(services: Services, project_key: str) -> RequestContext:
    scope = await services.auth.resolve_scope(OPERATOR, project_key)
    if scope is None:
        raise NotFound(f"project {project_key!r} not found")
    return RequestContext(
        request_id="cli", principal=OPERATOR, project_key=project_key, project=scope
    )


async def cmd_migrate(args: argparse.Namespace) -> int:
    services = Services(Settings(database_url=args.database_url))
    try:
        before = await services.schema_state()
        state = await upgrade(services.database)
        if before.current == state.current:
            print(f"The schema is already current at revision {state.head}.")
        else:
            upgraded_from = ", ".join(before.current) or "empty"
            print(f"Upgraded the schema from {upgraded_from} to {state.head}.")
        operator = RequestContext(request_id="cli", principal=OPERATOR)
        summarized = await services.summaries.backfill(operator)
        if summarized:
            print(f"Summarized {summarized} settled runs for the reports.")
    finally:
        await services.close()
    return EXIT_OK


async def cmd_create_project(args: argparse.Namespace) -> int:
    services = await _open(args)
    try:
        ctx = RequestContext(request_id="cli", principal=OPERATOR)
        await services.admin.create_project(ctx, args.key, args.name)
    finally:
        await services.close()
    print(
        f"Created project {args.key}. Next: testoqa-server create-token {args.key} "
        "--name CI --role reporter"
    )
    return EXIT_OK


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise CommandError("no password on standard input: pipe one line with the password")
        return password
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat the password: "):
        raise CommandError("the two passwords differ; nothing was created")
    return first


async def cmd_create_user(args: argparse.Namespace) -> int:
    password = _read_password(args)
    services = await _open(args)
    try:
        ctx = RequestContext(request_id="cli", principal=OPERATOR)
        await services.admin.create_user(ctx, args.email, password)
    finally:
        await services.close()
    print(f"Created user {args.email.strip().lower()}.")
    return EXIT_OK


async def cmd_add_member(args: argparse.Namespace) -> int:
    services = await _open(args)
    try:
        ctx = await _operator_context(services, args.project_key)
        role = await services.admin.set_member(ctx, args.email, args.role)
    finally:
        await services.close()
    print(f"{args.email.strip().lower()} is now {role.value} on {args.project_key}.")
    return EXIT_OK


async def cmd_create_token(args: argparse.Namespace) -> int:
    services = await _open(args)
    try:
        ctx = await _operator_context(services, args.project_key)
        issued = await services.admin.create_token(ctx, args.name, args.role)
    finally:
        await services.close()
    print(f"Created token {issued.token_id} ({args.role}). Its secret is shown only this once:")
    print(issued.secret)
    return EXIT_OK


async def cmd_revoke_token(args: argparse.Namespace) -> int:
    project_key, number = parse_token_id(args.token_id)
    services = await _open(args)
    try:
        ctx = await _operator_context(services, project_key)
        token_id = await services.admin.revoke_token(ctx, number)
    finally:
        await services.close()
    print(f"Revoked token {token_id}.")
    return EXIT_OK


async def cmd_list_tokens(args: argparse.Namespace) -> int:
    services = await _open(args)
    try:
        ctx = await _operator_context(services, args.project_key)
        tokens = await services.admin.list_tokens(ctx)
    finally:
        await services.close()
    if not tokens:
        print(f"Project {args.project_key} has no tokens.")
        return EXIT_OK
    print(f"{'TOKEN_ID':<16} {'ROLE':<9} {'CREATED':<26} {'REVOKED':<26} NAME")
    for token in tokens:
        print(
            f"{token.token_id:<16} {token.role:<9} {token.created_at:<26} "
            f"{token.revoked_at or '-':<26} {token.name}"
        )
    return EXIT_OK


async def cmd_serve(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, args.log_format)
    settings = Settings(
        database_url=args.database_url,
        host=args.host,
        port=args.port,
        max_batch_items=args.max_batch_items,
        max_body_bytes=args.max_body_bytes,
        public_url=args.public_url.rstrip("/") if args.public_url else None,
        workers=args.workers,
        max_live_streams=args.max_live_streams,
    )
    if settings.workers > 1:
        return await _serve_workers(args, settings)
    services = await _open(args, settings)
    runner = web.AppRunner(create_app(services), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from exc
    host, port = runner.addresses[0][:2]
    _print_banner(host, port, args)
    await _wait_for_stop_signal()
    server_logger.info("stopping")
    await runner.cleanup()
    return EXIT_OK


async def _serve_workers(args: argparse.Namespace, settings: Settings) -> int:
    if make_url(settings.database_url).get_backend_name() == "sqlite":
        raise CommandError(
            f"--workers {settings.workers} needs a PostgreSQL database: on SQLite the write "
            "lock and the live run updates exist once per process, so several processes "
            "would wait on each other and miss each other's updates; use --workers 1 or a "
            "postgresql+asyncpg:// database URL"
        )
    # The schema is checked once here, before any worker connects.
    services = await _open(args, settings)
    await services.close()
    try:
        return await serve_workers(
            settings,
            log_level=args.log_level,
            log_format=args.log_format,
            on_listening=lambda port: _print_banner(args.host, port, args),
        )
    except WorkersError as exc:
        raise CommandError(str(exc)) from exc


def _print_banner(host: str, port: int, args: argparse.Namespace) -> None:
    url = f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"
    database = _safe_url(args.database_url)
    processes = f", {args.workers} worker processes" if args.workers > 1 else ""
    print(f"TestoQA server listening on {url} (database: {database}{processes})", flush=True)
    print("Set up a project and a CI token in another terminal:")
    print(f"  testoqa-server create-project DEMO --name 'Demo' --database-url '{database}'")
    print(
        f"  testoqa-server create-token DEMO --name CI --role reporter --database-url '{database}'"
    )
    print(
        f"Then report a pytest run: TESTOQA_URL={url} TESTOQA_TOKEN=<token> "
        "pytest --testoqa-project DEMO",
        flush=True,
    )


async def _wait_for_stop_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], Coroutine[Any, Any, int]] = args.handler
    try:
        return asyncio.run(handler(args))
    except (CommandError, ServiceError) as exc:
        print(f"testoqa-server {args.command}: error: {_message(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def _message(exc: Any) -> str:
    return exc.message if isinstance(exc, ServiceError) else str(exc)


if __name__ == "__main__":
    sys.exit(main())
