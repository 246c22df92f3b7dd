"""Building blocks of the OpenAPI document: error responses, parameters, references."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from gateway.api.schemas import ErrorBody

ERRORS = {
    400: "malformed: the body is not JSON, or a query parameter is not what it should be",
    401: "missing or unknown API key",
    403: "the key is valid but this operation needs an admin key",
    404: "no such resource (or not yours)",
    409: "conflicts with the resource's state (or an Idempotency-Key reused with another body)",
    413: "the body is larger than the configured limit (error.details[0].limit, .setting)",
    415: "the body is not application/json",
    422: (
        "a field is invalid (code invalid_request; details name each field), a URL is refused "
        "(code url_refused: its host is or resolves to an internal address, or does not "
        "resolve), or no backend this tenant may use can serve the request "
        "(code no_eligible_backend)"
    ),
    502: "the provider refused the operation",
    429: "over a rate limit or quota, or the gateway queue is full; see Retry-After",
    503: "the store is unavailable or every eligible backend is ejected; see Retry-After",
}
TENANT: list[dict[str, list[str]]] = [{"tenantKey": []}]
ADMIN: list[dict[str, list[str]]] = [{"adminKey": []}]
EITHER = TENANT + ADMIN


def ref(model: type[BaseModel] | str) -> dict[str, str]:
    name = model if isinstance(model, str) else model.__name__
    return {"$ref": f"#/components/schemas/{name}"}


def json_of(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref(model)}}}


def errors_of(*statuses: int) -> dict[str, Any]:
    out = {}
    for status in statuses:
        response = json_of(ErrorBody, ERRORS[status])
        if status in (429, 503):
            response["headers"] = {"Retry-After": {"schema": {"type": "integer", "minimum": 0}}}
        if status == 401:
            response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        out[str(status)] = response
    return out


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": ref(model)}}}


def path_param(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def query_param(name: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}], "default": None}


def given(props: dict[str, Any], *fields: str) -> dict[str, Any]:
    """Each of `fields` is present, not null, and valid as its property says."""
    return {
        "properties": {f: props[f]["anyOf"][0] for f in fields},
        "required": list(fields),
    }
