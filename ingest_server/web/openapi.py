"""The OpenAPI 3.1 document, generated from the route table and the pydantic models."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ingest_server import __version__, schemas
from ingest_server.web.routes import API_ROUTES
from ingest_server.web.routing import Route

REF_TEMPLATE = "#/components/schemas/{model}"
PATH_PARAM = re.compile(r"{(\w+)}")
PATH_PARAM_DOCS = {
    "key": "Project key, such as WEB.",
    "run": "Run id (a UUID).",
    "case": "Test case id (a UUID).",
    "number": "Token number within its owner.",
}
FORMAT_PARAM = {
    "name": "format",
    "in": "query",
    "required": False,
    "description": "json (the default) or csv for the same rows as text/csv.",
    "schema": {"enum": ["json", "csv"], "default": "json"},
}
ERROR_STATUSES = {
    400: "Malformed JSON.",
    401: "Missing, malformed or revoked token.",
    403: "The role on this project lacks the permission.",
    404: "No such project, run or case, or one the caller may not see.",
    413: "Body or batch over the size limit.",
    415: "Content type other than application/json.",
    422: "A value breaks the schema; details name each field.",
}


def _models() -> list[type[BaseModel]]:
    models: list[type[BaseModel]] = [schemas.ErrorEnvelope, schemas.ExecutionIn]
    for route in API_ROUTES:
        models.append(route.response)
        if route.request is not None:
            models.append(route.request)
    return list(dict.fromkeys(models))


def _operation(route: Route) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status in (route.status, *route.extra_statuses):
        content: dict[str, Any] = {"application/json": {"schema": {"$ref": _ref(route.response)}}}
        if route.csv:
            content["text/csv"] = {"schema": {"type": "string"}}
        responses[str(status)] = {"description": "Success.", "content": content}
    for status, description in ERROR_STATUSES.items():
        if route.request is None and status in (400, 413, 415):
            continue
        responses[str(status)] = {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": _ref(schemas.ErrorEnvelope)}}},
        }
    operation: dict[str, Any] = {
        "operationId": route.name,
        "summary": route.summary,
        "security": [{"bearerAuth": []}],
        "parameters": _parameters(route),
        "responses": responses,
        "x-testoqa-action": route.action.value if route.action else "signed_in",
    }
    if route.request is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": _ref(route.request)}}},
        }
    return operation


def _parameters(route: Route) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": PATH_PARAM_DOCS[name],
            "schema": {"type": "string"},
        }
        for name in PATH_PARAM.findall(route.path)
    ]
    parameters += [
        {
            "name": q.name,
            "in": "query",
            "required": False,
            "description": q.description,
            "schema": q.schema,
        }
        for q in route.query
    ]
    if route.csv and not any(q.name == "format" for q in route.query):
        parameters.append(FORMAT_PARAM)
    return parameters


def _ref(model: type[BaseModel]) -> str:
    return REF_TEMPLATE.format(model=model.__name__)


def build_openapi() -> dict[str, Any]:
    """Return the OpenAPI document of every API route."""
    _, definitions = models_json_schema(
        [(model, "validation") for model in _models()], ref_template=REF_TEMPLATE
    )
    paths: dict[str, dict[str, Any]] = {}
    for route in API_ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "TestoQA ingest API",
            "version": __version__,
            "description": "Stores pytest runs, test cases and executions per project.",
        },
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": (
                        "A project API token (from 'testoqa-server create-token' or a "
                        "project's settings page) or a personal access token; pages and "
                        "GET routes also accept a signed-in session cookie."
                    ),
                }
            },
        },
    }
