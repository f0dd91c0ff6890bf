"""The served OpenAPI document: valid OpenAPI 3.1, and true to the routes, models and handlers."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from pydantic import BaseModel

from ingest_server import account_schemas, report_schemas, schemas
from ingest_server.repositories import executions as execution_repo
from ingest_server.services.container import Services
from ingest_server.web.openapi import build_openapi
from tests.conftest import Member, Tenant, sign_in

OPENAPI_PATH = "/api/v1/openapi.json"
API = "/api/v1/projects"
REF_TEMPLATE = "#/components/schemas/{model}"
PATH_PARAM = re.compile(r"{(\w+)}")
UNKNOWN_PARAM_MESSAGE = re.compile(r"unknown query parameter '(\w+)': this route accepts (.+)$")
CASE_KEY = "tests/test_docs.py::test_example"

# The model each operation's request body must be, stated here rather than
# read from the route table, so a wrong model in the table is caught.
REQUEST_MODELS: dict[str, type[BaseModel]] = {
    "create_run": schemas.RunCreate,
    "upsert_cases": schemas.CasesUpsert,
    "post_executions": schemas.ExecutionBatch,
    "finish_run": schemas.RunFinish,
    "put_gate": report_schemas.GateRules,
    "create_personal_token": account_schemas.PersonalTokenCreate,
}
# Schemas the document publishes for clients beyond the request bodies.
EXTRA_MODELS: dict[str, type[BaseModel]] = {
    "ExecutionIn": schemas.ExecutionIn,
    "ErrorEnvelope": schemas.ErrorEnvelope,
}
SAMPLE_QUERY_VALUES = {"branch": "main", "q": "docs"}
OPERATION_IDS = [
    operation["operationId"]
    for item in build_openapi()["paths"].values()
    for operation in item.values()
]


async def served_document(client: Any) -> dict[str, Any]:
    response = await client.get(OPENAPI_PATH)
    assert response.status == 200
    assert response.content_type == "application/json"
    document: dict[str, Any] = await response.json()
    return document


def find_operation(document: dict[str, Any], operation_id: str) -> tuple[str, str, dict[str, Any]]:
    """Return (method, path template, operation) of the operation with this id."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if operation["operationId"] == operation_id:
                return method.upper(), path, operation
    raise AssertionError(f"operation {operation_id!r} is not in the served document")


def model_schemas(model: type[BaseModel]) -> dict[str, Any]:
    """Return the model's JSON schema and those of its nested models, by name."""
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    nested = schema.pop("$defs", {})
    return {model.__name__: schema, **nested}


async def seed_two_runs(client: Any, services: Services, tenant: Tenant) -> dict[str, str]:
    """Create two finished runs that each ran one case twice, so every list has a second page.

    Return the path values of the second run and the case, and both run ids
    as the values of the comparison's base and head.
    """
    headers = tenant.auth("reporter")
    run_ids = []
    for number in (1, 2):
        started_at = f"2026-01-0{number}T00:00:00Z"
        body = {"client_run_id": f"docs-{number}", "started_at": started_at}
        response = await client.post(f"{API}/{tenant.key}/runs", json=body, headers=headers)
        assert response.status == 201
        run_id = (await response.json())["run_id"]
        run_ids.append(run_id)
        executions = [
            {
                "id": str(uuid.uuid4()),
                "case_key": CASE_KEY,
                "attempt": attempt,
                "outcome": "passed",
                "phase": "call",
                "duration": 0.1,
                "started_at": started_at,
            }
            for attempt in (1, 2)
        ]
        response = await client.post(
            f"{API}/{tenant.key}/runs/{run_id}/executions",
            json={"executions": executions},
            headers=headers,
        )
        assert response.status == 200
        response = await client.post(
            f"{API}/{tenant.key}/runs/{run_id}/finish",
            json={"status": "finished", "finished_at": f"2026-01-0{number}T00:01:00Z"},
            headers=headers,
        )
        assert response.status == 200
    async with services.database.read() as session:
        rows = await execution_repo.list_executions(
            session, tenant.project_id, uuid.UUID(run_id), limit=10
        )
    return {
        "key": tenant.key,
        "run": run_id,
        "case": str(rows[0].case_id),
        "base": run_ids[0],
        "head": run_ids[1],
    }


@pytest.fixture
async def member(client: Any, services: Services, tenant_a: Tenant) -> Member:
    """An admin of tenant A, signed in: every operation is open to this caller."""
    return await sign_in(client, services, tenant_a, role="admin")


@pytest.fixture
async def path_values(
    client: Any, services: Services, tenant_a: Tenant, member: Member
) -> dict[str, str]:
    values = await seed_two_runs(client, services, tenant_a)
    response = await client.post(
        "/api/v1/account/tokens", json={"name": "openapi"}, headers=member.csrf_header
    )
    assert response.status == 201, await response.text()
    values["number"] = str((await response.json())["number"])
    return values


# --- the document itself --------------------------------------------------------


async def test_document_is_openapi_31(client: Any) -> None:
    document = await served_document(client)
    assert document["openapi"].startswith("3.1.")
    validate(document, cls=OpenAPIV31SpecValidator)


async def test_served_equals_built(client: Any) -> None:
    """The served document is the generated one, so the parametrized tests cover it."""
    assert await served_document(client) == build_openapi()


async def test_operation_ids_unique(client: Any) -> None:
    document = await served_document(client)
    operation_ids = [
        operation["operationId"]
        for item in document["paths"].values()
        for operation in item.values()
    ]
    assert len(operation_ids) == len(set(operation_ids))


async def test_paths_match_app_routes(client: Any) -> None:
    document = await served_document(client)
    documented = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    # The document does not describe itself.
    registered = {
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/")
        and route.resource.canonical != OPENAPI_PATH
    }
    assert documented == registered


async def test_path_parameters_documented(client: Any) -> None:
    document = await served_document(client)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            in_path = [p["name"] for p in operation["parameters"] if p["in"] == "path"]
            assert in_path == PATH_PARAM.findall(path), f"{method} {path}"
            for parameter in operation["parameters"]:
                if parameter["in"] == "path":
                    assert parameter["required"] is True, f"{method} {path} {parameter}"


# --- request bodies ---------------------------------------------------------------


async def test_body_operations_match(client: Any) -> None:
    document = await served_document(client)
    with_body = {
        operation["operationId"]
        for item in document["paths"].values()
        for operation in item.values()
        if "requestBody" in operation
    }
    assert with_body == set(REQUEST_MODELS)


@pytest.mark.parametrize("operation_id", sorted(REQUEST_MODELS))
async def test_body_schema_is_model(client: Any, operation_id: str) -> None:
    document = await served_document(client)
    _, _, operation = find_operation(document, operation_id)
    model = REQUEST_MODELS[operation_id]
    content = operation["requestBody"]["content"]

    assert operation["requestBody"]["required"] is True
    assert list(content) == ["application/json"]
    assert content["application/json"]["schema"] == {
        "$ref": REF_TEMPLATE.format(model=model.__name__)
    }
    components = document["components"]["schemas"]
    for name, schema in model_schemas(model).items():
        assert components.get(name) == schema, name


@pytest.mark.parametrize("name", sorted(EXTRA_MODELS))
async def test_published_schema_is_model(client: Any, name: str) -> None:
    components = (await served_document(client))["components"]["schemas"]
    for schema_name, schema in model_schemas(EXTRA_MODELS[name]).items():
        assert components.get(schema_name) == schema, schema_name


# --- query parameters ---------------------------------------------------------------


def query_parameters(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p["schema"] for p in operation["parameters"] if p["in"] == "query"}


async def request(
    client: Any,
    member: Member,
    method: str,
    path: str,
    query: dict[str, str],
) -> tuple[int, dict[str, Any]]:
    """Call an operation as the signed-in admin. A CSV response is returned as {"csv": text}."""
    # Routes that take a body get an empty JSON object. The handlers check the
    # query before they read the body, so its contents do not matter here.
    kwargs: dict[str, Any] = {"headers": member.csrf_header, "params": query}
    if method in ("POST", "PUT"):
        kwargs["json"] = {}
    response = await client.request(method, path, **kwargs)
    if response.content_type == "text/csv":
        return response.status, {"csv": await response.text()}
    return response.status, await response.json()


@pytest.mark.parametrize("operation_id", OPERATION_IDS)
async def test_unknown_query_param_rejected(
    client: Any, member: Member, path_values: dict[str, str], operation_id: str
) -> None:
    """The 422 for an unknown parameter names the accepted ones: exactly the documented ones."""
    method, template, operation = find_operation(await served_document(client), operation_id)
    path = PATH_PARAM.sub(lambda match: path_values[match[1]], template)

    status, body = await request(client, member, method, path, {"no_such_param": "1"})

    assert status == 422, body
    assert body["error"]["code"] == "validation_error"
    assert body["error"]["details"] == [
        {"field": "no_such_param", "message": "unknown query parameter"}
    ]
    match = UNKNOWN_PARAM_MESSAGE.search(body["error"]["message"])
    assert match is not None, body["error"]["message"]
    accepted = set() if match[2] == "none" else set(match[2].split(", "))
    assert accepted == set(query_parameters(operation))


async def first_cursor(client: Any, member: Member, method: str, path: str) -> str:
    """Return the next_cursor of a one-item first page."""
    status, body = await request(client, member, method, path, {"limit": "1"})
    assert status == 200, body
    assert body["next_cursor"] is not None
    cursor: str = body["next_cursor"]
    return cursor


def valid_values(name: str, schema: dict[str, Any], path_values: dict[str, str]) -> list[str]:
    if "enum" in schema:
        return [str(value) for value in schema["enum"]]
    if schema.get("type") == "integer":
        return [str(schema["minimum"]), str(schema["maximum"])]
    if schema.get("type") == "number":
        return [str(schema.get("minimum", 0)), str(schema.get("maximum", 1))]
    return [path_values.get(name) or SAMPLE_QUERY_VALUES.get(name, "x")]


def invalid_values(schema: dict[str, Any]) -> list[str]:
    if "enum" in schema:
        return ["not-a-listed-value"]
    if schema.get("type") in ("integer", "number"):
        values = ["ten"]
        if "minimum" in schema:
            values.append(str(schema["minimum"] - 1))
        if "maximum" in schema:
            values.append(str(schema["maximum"] + 1))
        return values
    if schema.get("format") == "uuid":
        return ["not-a-uuid"]
    return []


QUERY_OPERATIONS = [
    operation_id
    for operation_id in OPERATION_IDS
    if query_parameters(find_operation(build_openapi(), operation_id)[2])
]


@pytest.mark.parametrize("operation_id", QUERY_OPERATIONS)
async def test_documented_query_values_accepted(
    client: Any, member: Member, path_values: dict[str, str], operation_id: str
) -> None:
    method, template, operation = find_operation(await served_document(client), operation_id)
    path = PATH_PARAM.sub(lambda match: path_values[match[1]], template)

    for name, schema in query_parameters(operation).items():
        values = valid_values(name, schema, path_values)
        if name == "cursor":
            values = [await first_cursor(client, member, method, path)]
        for value in values:
            status, body = await request(client, member, method, path, {name: value})
            assert status == 200, f"{name}={value}: {body}"


@pytest.mark.parametrize("operation_id", QUERY_OPERATIONS)
async def test_invalid_query_values_rejected(
    client: Any, member: Member, path_values: dict[str, str], operation_id: str
) -> None:
    method, template, operation = find_operation(await served_document(client), operation_id)
    path = PATH_PARAM.sub(lambda match: path_values[match[1]], template)

    for name, schema in query_parameters(operation).items():
        for value in invalid_values(schema):
            status, body = await request(client, member, method, path, {name: value})
            assert status == 422, f"{name}={value}: {body}"
            assert body["error"]["code"] == "validation_error", f"{name}={value}"
