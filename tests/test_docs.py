"""Checks that fail when the docs drift from the code.

Each test reads a fact from the code (routes, command-line options,
environment variables, plugin settings and hooks, error codes, limits,
roles and metrics) and looks for it in the Markdown file that documents it.
"""

from __future__ import annotations

import argparse
import ast
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import BaseModel

from ingest_server import cli, schemas
from ingest_server.config import DEFAULT_MAX_BATCH_ITEMS, DEFAULT_MAX_BODY_BYTES
from ingest_server.services import errors as service_errors
from ingest_server.services.authz import ROLE_ACTIONS, TOKEN_ROLES, Action, Role
from ingest_server.services.pagination import DEFAULT_LIMIT, MAX_LIMIT
from ingest_server.web import errors as web_errors
from ingest_server.web.metrics import Metrics
from ingest_server.web.routes import API_ROUTES, add_api_routes
from ingest_server.web.system import add_system_routes
from pytest_testoqa import hookspecs, upload
from pytest_testoqa import settings as plugin_settings
from pytest_testoqa.settings import TOKEN_ENV

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
API_DOC = ROOT / "docs" / "api.md"
CLI_DOC = ROOT / "docs" / "cli.md"
PLUGIN_DOC = ROOT / "docs" / "plugin.md"
AUTHORIZATION_DOC = ROOT / "docs" / "architecture" / "authorization.md"
BOUNDARIES_DOC = ROOT / "docs" / "architecture" / "module-boundaries.md"
OBSERVABILITY_DOC = ROOT / "docs" / "architecture" / "errors-and-observability.md"
CI_SCRIPT = ROOT / ".ci" / "run"

# JSON schema keywords whose numbers docs/api.md must list for each field.
CONSTRAINT_KEYS = frozenset(
    ("minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems", "maxProperties")
)


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    """Return the lines under a heading, up to the next heading of the same or a higher level."""
    depth = len(heading.split(" ", 1)[0])
    next_heading = re.compile(rf"^#{{1,{depth}}} ")
    lines = text.splitlines()
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines)) if next_heading.match(lines[i])), len(lines))
    return "\n".join(lines[start:end])


def _table_rows(text: str) -> list[list[str]]:
    """Return the cells of every Markdown table row in text, separator rows left out."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|") or set(line) <= {"|", "-", " "}:
            continue
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _table_after(text: str, label: str) -> str:
    """Return the Markdown table that follows the first line starting with label."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(label))
    table = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    return "\n".join(table)


def _contains_number(text: str, number: int) -> bool:
    return re.search(rf"(?<!\d){re.escape(str(number))}(?!\d)", text) is not None


# --- routes -----------------------------------------------------------------


def _all_routes() -> list[tuple[str, str]]:
    app = web.Application()
    add_api_routes(app)
    add_system_routes(app)
    return [
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    ]


@pytest.mark.parametrize(("method", "path"), _all_routes())
def test_route_documented(method: str, path: str) -> None:
    assert f"`{method} {path}`" in _text(API_DOC)


# How docs/architecture/authorization.md names the need of a route outside any project.
SIGNED_IN_ACTION = "none: a signed-in caller, checked by the service"


def test_route_actions_documented() -> None:
    rows = _table_rows(_section(_text(AUTHORIZATION_DOC), "## Actions each route needs"))
    documented = {row[0]: row[1] for row in rows[1:]}
    expected = {
        f"`{r.method} {r.path}`": f"`{r.action.value}`" if r.action else SIGNED_IN_ACTION
        for r in API_ROUTES
    }
    assert documented == expected


def _import_contracts() -> list[dict[str, Any]]:
    pyproject = tomllib.loads(_text(ROOT / "pyproject.toml"))
    contracts: list[dict[str, Any]] = pyproject["tool"]["importlinter"]["contracts"]
    return contracts


@pytest.mark.parametrize("contract", _import_contracts(), ids=lambda contract: contract["name"])
def test_import_contract_documented(contract: dict[str, Any]) -> None:
    # Joined into one line, because a contract's heading may wrap.
    text = " ".join(_section(_text(BOUNDARIES_DOC), "## The contracts").split())
    assert f"{contract['name']}** (`{contract['type']}`)" in text


# --- command line -------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError(f"{parser.prog} has no subcommands")


def _long_options(parser: argparse.ArgumentParser) -> list[str]:
    return [
        option
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    ]


@pytest.mark.parametrize("command", sorted(_subcommands(cli.build_parser())))
def test_subcommand_documented(command: str) -> None:
    assert f"## `testoqa-server {command}`" in _text(CLI_DOC).splitlines()


@pytest.mark.parametrize(
    ("command", "option"),
    [
        (name, option)
        for name, sub in _subcommands(cli.build_parser()).items()
        for option in _long_options(sub)
    ],
)
def test_subcommand_option_documented(command: str, option: str) -> None:
    section = _section(_text(CLI_DOC), f"## `testoqa-server {command}`")
    assert f"`{option}" in section


@pytest.mark.parametrize("option", _long_options(cli.build_parser()))
def test_top_level_option_documented(option: str) -> None:
    assert f"`testoqa-server {option}`" in _text(CLI_DOC)


def _environment_reads(package: Path) -> set[str]:
    """Return the names in os.environ.get("..."), os.environ["..."] and os.getenv("...")."""
    names: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(_text(path))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in (
                "os.environ.get",
                "os.getenv",
            ):
                argument = node.args[0] if node.args else None
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
                argument = node.slice
            else:
                continue
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                names.add(argument.value)
    return names


@pytest.mark.parametrize("variable", sorted(_environment_reads(ROOT / "ingest_server")))
def test_server_variable_documented(variable: str) -> None:
    section = _section(
        _section(_text(CLI_DOC), "## `testoqa-server`"), "### Environment variables"
    )
    assert f"`{variable}`" in [row[0] for row in _table_rows(section)]


@pytest.mark.parametrize("option", _long_options(_subcommands(upload.build_parser())["upload"]))
def test_upload_option_documented(option: str) -> None:
    assert f"`{option}" in _section(_text(CLI_DOC), "## `testoqa upload`")


@pytest.mark.parametrize(
    "variable", sorted(_environment_reads(ROOT / "pytest_testoqa" / "upload.py") | {TOKEN_ENV})
)
def test_upload_variable_documented(variable: str) -> None:
    assert f"`{variable}`" in _section(_text(CLI_DOC), "## `testoqa upload`")


# --- plugin -------------------------------------------------------------------


class _RecordingParser:
    """Stand-in for pytest.Parser that records the options and ini keys a plugin adds."""

    def __init__(self) -> None:
        self.options: list[str] = []
        self.ini_keys: list[str] = []

    def getgroup(self, name: str, description: str = "") -> _RecordingParser:
        return self

    def addoption(self, *names: str, **settings: Any) -> None:
        self.options.extend(names)

    def addini(self, name: str, *args: Any, **settings: Any) -> None:
        self.ini_keys.append(name)


def _plugin_settings() -> list[str]:
    recorder = _RecordingParser()
    plugin_settings.add_options(recorder)  # type: ignore[arg-type]
    names = recorder.options + recorder.ini_keys
    names += [option.env for option in plugin_settings.OPTIONS]
    return names


@pytest.mark.parametrize("name", _plugin_settings())
def test_plugin_setting_documented(name: str) -> None:
    rows = _table_rows(_section(_text(PLUGIN_DOC), "## Settings"))
    # A cell names the setting first, such as "`--testoqa-url URL`".
    names = {cell.split(" ", 1)[0].strip("`") for row in rows for cell in row}
    assert name in names


@pytest.mark.parametrize(
    "hook", sorted(name for name in vars(hookspecs) if name.startswith("pytest_testoqa_"))
)
def test_plugin_hook_documented(hook: str) -> None:
    assert f"def {hook}(" in _section(_text(PLUGIN_DOC), "## Hooks")


# --- errors -------------------------------------------------------------------


def _service_error_types() -> Iterator[type[service_errors.ServiceError]]:
    pending = [service_errors.ServiceError]
    while pending:
        error_type = pending.pop()
        pending.extend(error_type.__subclasses__())
        if error_type.__module__.startswith("ingest_server."):
            yield error_type


def _literal_error_calls() -> Iterator[tuple[int, str]]:
    """Yield (status, code) of each RequestError() and error_response() call with literals."""
    for path in (ROOT / "ingest_server").rglob("*.py"):
        for node in ast.walk(ast.parse(_text(path))):
            if not isinstance(node, ast.Call) or len(node.args) < 2:
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            status, code = node.args[0], node.args[1]
            if (
                # "__init__" catches RequestError subclasses that pass a fixed
                # status and code to super().__init__().
                name in ("RequestError", "error_response", "__init__")
                and isinstance(status, ast.Constant)
                and isinstance(status.value, int)
                and isinstance(code, ast.Constant)
            ):
                yield status.value, str(code.value)


def _http_fallback_code() -> str:
    """Return the code from_http_exception uses for statuses not in HTTP_ERROR_CODES."""
    tree = ast.parse(_text(ROOT / "ingest_server" / "web" / "errors.py"))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and getattr(node.func.value, "id", None) == "HTTP_ERROR_CODES"
        ):
            default = node.args[1]
            assert isinstance(default, ast.Constant)
            return str(default.value)
    raise AssertionError("from_http_exception no longer falls back to a literal code")


def _error_codes() -> dict[str, set[int]]:
    """Return every error code the server can send, with the statuses it comes with."""
    codes: dict[str, set[int]] = {}
    for error_type in _service_error_types():
        # RequestError and its subclasses carry their status and code per
        # instance; the literal calls below find them.
        if not issubclass(error_type, web_errors.RequestError):
            codes.setdefault(error_type.code, set()).add(web_errors.status_for(error_type("-")))
    for status, code in _literal_error_calls():
        codes.setdefault(code, set()).add(status)
    for status, code in web_errors.HTTP_ERROR_CODES.items():
        codes.setdefault(code, set()).add(status)
    codes.setdefault(_http_fallback_code(), set())
    return codes


def _documented_error_codes() -> dict[str, str]:
    rows = _table_rows(_section(_text(API_DOC), "### Error codes"))
    return {row[0].strip("`"): row[1] for row in rows[1:]}


@pytest.mark.parametrize("code", sorted(_error_codes()))
def test_error_code_documented(code: str) -> None:
    documented = _documented_error_codes()
    assert code in documented
    for status in _error_codes()[code]:
        assert str(status) in documented[code]


def test_no_unknown_error_code_documented() -> None:
    assert set(_documented_error_codes()) <= set(_error_codes())


# --- limits and fields --------------------------------------------------------


LIMIT_ROWS = [
    ("executions per batch request", DEFAULT_MAX_BATCH_ITEMS),
    ("request body", DEFAULT_MAX_BODY_BYTES),
    ("test cases per `PUT .../cases` request", schemas.MAX_CASES_PER_REQUEST),
    ("items per page (`limit`)", DEFAULT_LIMIT),
    ("items per page (`limit`)", MAX_LIMIT),
]


@pytest.mark.parametrize(("limit", "value"), LIMIT_ROWS)
def test_limit_default_documented(limit: str, value: int) -> None:
    rows = {row[0]: row for row in _table_rows(_section(_text(API_DOC), "## Limits"))}
    assert _contains_number(" ".join(rows[limit][1:]), value)


# Each request model and the line that opens its table in docs/api.md.
FIELD_TABLES: list[tuple[type[BaseModel], str]] = [
    (schemas.RunCreate, "Run ("),
    (schemas.RunFinish, "Finish ("),
    (schemas.CaseIn, "Test case ("),
    (schemas.ExecutionIn, "Execution ("),
]


def _constraint_numbers(schema: Any) -> set[int]:
    """Collect the numeric limits of a JSON schema fragment, without following $ref."""
    numbers: set[int] = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key in CONSTRAINT_KEYS and isinstance(value, int | float):
                numbers.add(int(value))
            else:
                numbers |= _constraint_numbers(value)
    elif isinstance(schema, list):
        for item in schema:
            numbers |= _constraint_numbers(item)
    return numbers


def _field_limits(model: type[BaseModel]) -> dict[str, set[int]]:
    """Return each field's numeric limits by dotted name, nested models flattened."""
    schema = model.model_json_schema()
    definitions = schema.get("$defs", {})
    limits: dict[str, set[int]] = {}
    for name, field_schema in schema["properties"].items():
        reference = field_schema.get("$ref", "")
        if reference.startswith("#/$defs/"):
            nested = definitions[reference.removeprefix("#/$defs/")]
            for nested_name, nested_schema in nested["properties"].items():
                limits[f"{name}.{nested_name}"] = _constraint_numbers(nested_schema)
        else:
            limits[name] = _constraint_numbers(field_schema)
    return limits


FIELD_CASES = [
    (model, label, field, numbers)
    for model, label in FIELD_TABLES
    for field, numbers in _field_limits(model).items()
]


@pytest.mark.parametrize(
    ("model", "label", "field", "numbers"),
    FIELD_CASES,
    ids=[f"{model.__name__}.{field}" for model, _, field, _ in FIELD_CASES],
)
def test_field_limits_documented(
    model: type[BaseModel], label: str, field: str, numbers: set[int]
) -> None:
    table = _table_after(_section(_text(API_DOC), "## Limits"), label)
    matching = [row for row in _table_rows(table) if f"`{field}`" in row[0]]
    assert matching, f"{model.__name__}.{field} has no row in the table after {label!r}"
    for number in numbers:
        assert _contains_number(" ".join(matching[0][1:]), number)


def test_token_roles_documented() -> None:
    rows = _table_rows(_section(_text(API_DOC), "## Authentication and tokens"))
    documented = {row[0].strip("`") for row in rows[1:]}
    assert documented == {role.value for role in TOKEN_ROLES}


# --- roles and metrics --------------------------------------------------------


def test_role_table_matches_authz() -> None:
    rows = _table_rows(_section(_text(AUTHORIZATION_DOC), "## Roles and actions"))
    header, body = rows[0], rows[1:]
    roles = [Role(name) for name in header[1:]]
    documented = {
        role: frozenset(Action(row[0].strip("`")) for row in body if row[1 + i] == "yes")
        for i, role in enumerate(roles)
    }
    assert roles == list(Role)
    assert {row[0].strip("`") for row in body} == {action.value for action in Action}
    assert documented == ROLE_ACTIONS


def _exposed_metric_names() -> list[str]:
    metrics = Metrics(lambda: {"in_use": 0, "idle": 0})
    return [
        f"{family.name}_total" if family.type == "counter" else family.name
        for family in metrics.registry.collect()
    ]


@pytest.mark.parametrize("metric", _exposed_metric_names())
def test_metric_documented(metric: str) -> None:
    rows = _table_rows(_section(_text(OBSERVABILITY_DOC), "## Metrics"))
    assert f"`{metric}`" in [row[0] for row in rows]


# --- README -------------------------------------------------------------------


def _code_block_lines(text: str) -> list[str]:
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)
    return [line.strip() for block in blocks for line in block.splitlines()]


def test_readme_test_command_matches_ci() -> None:
    ci_commands = [line.strip() for line in _text(CI_SCRIPT).splitlines() if "-m tox" in line]
    assert len(ci_commands) == 1
    assert ci_commands[0] in _code_block_lines(_text(README))
