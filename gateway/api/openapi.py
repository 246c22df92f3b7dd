"""`GET /openapi.json`: an OpenAPI 3.1 document generated from the models, built once per app.

The document tells the truth about this deployment: every constraint the models enforce
(patterns, ranges, enums, the URL and `data:` forms, which fields go together), the
configured model names, and every status code each operation can return. What it cannot
express (a URL whose host resolves somewhere internal, a fleet that cannot serve a valid
combination of fields) is a 422 with its own `code`: `url_refused`, `no_eligible_backend`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from adapters.normalized import (
    DATA_URI_PATTERN,
    MAX_URL_LENGTH,
    GenerationRequest,
    url_pattern,
)
from gateway.api.openapi_tunes import TUNE_MODELS, tailor_tune_request, tune_paths, tune_webhooks
from gateway.api.schemas import (
    BackendList,
    BackendStatus,
    DeadLetterList,
    ErrorBody,
    Health,
    Readiness,
    ReplayRequest,
    ReplayResult,
    WebhookAck,
    WebhookEvent,
)
from gateway.api.usage import UsageReport
from gateway.config import Settings
from gateway.context import SETTINGS
from gateway.jobs.model import Job

DOCUMENT = web.AppKey("openapi_document", bytes)
JOB_ID_PATTERN = r"^gen_[0-9a-f]{24}$"
EPOCH_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,9})?$"

_MODELS: list[tuple[type[BaseModel], Any]] = [
    (GenerationRequest, "validation"),
    (Job, "serialization"),
    (ErrorBody, "serialization"),
    (BackendList, "serialization"),
    (BackendStatus, "serialization"),
    (Readiness, "serialization"),
    (Health, "serialization"),
    (WebhookAck, "serialization"),
    (WebhookEvent, "serialization"),
    (DeadLetterList, "serialization"),
    (ReplayRequest, "validation"),
    (ReplayResult, "serialization"),
    *TUNE_MODELS,
    (UsageReport, "serialization"),
]

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


def _ref(model: type[BaseModel] | str) -> dict[str, str]:
    name = model if isinstance(model, str) else model.__name__
    return {"$ref": f"#/components/schemas/{name}"}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    out = {}
    for status in statuses:
        response = _json(ErrorBody, ERRORS[status])
        if status in (429, 503):
            response["headers"] = {"Retry-After": {"schema": {"type": "integer", "minimum": 0}}}
        if status == 401:
            response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        out[str(status)] = response
    return out


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(model)}}}


def _path(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query(name: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}], "default": None}


def _given(props: dict[str, Any], *fields: str) -> dict[str, Any]:
    """Each of `fields` is present, not null, and valid as its property says."""
    return {
        "properties": {f: props[f]["anyOf"][0] for f in fields},
        "required": list(fields),
    }


def url_schemas(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """The schemas of a callback URL and of an image reference (URL or `data:` URI)."""
    https_only = not settings.outbound.allow_http
    url = {"type": "string", "maxLength": MAX_URL_LENGTH, "pattern": url_pattern(https_only)}
    image = {
        "anyOf": [url, {"type": "string", "pattern": DATA_URI_PATTERN}],
        "description": "An http(s) URL whose host is public (or allow-listed), or a data: URI.",
    }
    return url, image


def tailor_request(schemas: dict[str, Any], settings: Settings) -> None:
    """What pydantic cannot say on its own: URL forms, model names, fields that go together."""
    url, image = url_schemas(settings)
    request = schemas["GenerationRequest"]
    props = request["properties"]
    props["init_image"] = _nullable(image)
    props["mask_image"] = _nullable(image)
    props["webhook_url"] = {
        **_nullable(url),
        "description": "Where the result is delivered; its host must be public (or allow-listed).",
    }
    schemas["ControlNet"]["properties"]["image"] = image
    models = sorted({name for backend in settings.backends for name in backend.models})
    props["model"] = {
        "type": "string",
        "enum": models,
        "description": "Logical model name; each backend's `models` map turns it into its own id.",
        **({"default": "default"} if "default" in models else {}),
    }
    props["metadata"]["description"] = "Echoed in the job and the webhook; at most 16 KiB as JSON."
    request["allOf"] = [
        {"if": _given(props, "width"), "then": _given(props, "height")},
        {"if": _given(props, "height"), "then": _given(props, "width")},
        {"not": _given(props, "width", "aspect_ratio")},
        {"if": _given(props, "mask_image"), "then": _given(props, "init_image")},
        {"if": _given(props, "strength"), "then": _given(props, "init_image")},
    ]


def build_document(settings: Settings) -> dict[str, Any]:
    _, schemas = models_json_schema(_MODELS, ref_template="#/components/schemas/{model}")
    components = schemas["$defs"]
    tailor_request(components, settings)
    tailor_tune_request(components, settings, *url_schemas(settings))
    job_id = _path("id", {"type": "string", "pattern": JOB_ID_PATTERN})
    names = sorted(b.name for b in settings.backends)
    backend_name = _path("name", {"type": "string", "enum": names})
    return {
        "openapi": "3.1.0",
        "info": {"title": "Image generation gateway", "version": "1"},
        "components": {
            "schemas": components,
            "securitySchemes": {
                "tenantKey": {"type": "http", "scheme": "bearer", "description": "a tenant key"},
                "adminKey": {"type": "http", "scheme": "bearer", "description": "an admin key"},
            },
        },
        "paths": {**_paths(job_id, backend_name, names), **_tunes()},
        "webhooks": {
            "generation": {
                "post": {
                    "summary": "Delivered to the request's webhook_url when the job ends",
                    "requestBody": _body(WebhookEvent),
                    "responses": {"200": {"description": "any 2xx acknowledges"}},
                }
            },
            **tune_webhooks(_ref),
        },
    }


def _tunes() -> dict[str, Any]:
    """The tune operations, under the tenant key, with the store-outage 503 every route has."""
    paths = tune_paths(_ref, _json, _errors)
    for operations in paths.values():
        for operation in operations.values():
            operation["security"] = TENANT
            operation["responses"].update(_errors(503))
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "Idempotency-Key":
                    parameter["schema"]["minLength"] = 1
                if parameter["name"] == "cursor":
                    parameter["schema"] = {"type": "number", "minimum": 0, "maximum": 1e12}
    # Stateful testing follows these: a created tune is read, then canceled or deleted.
    names = {("post", ""): "createTune", ("get", ""): "listTunes"}
    names |= {("get", "/{id}"): "readTune", ("delete", "/{id}"): "deleteTune"}
    for (method, tail), operation_id in names.items():
        paths[f"/v1/tunes{tail}"][method]["operationId"] = operation_id
    accepted = paths["/v1/tunes"]["post"]["responses"]["202"]
    accepted["links"] = {
        verb: {"operationId": f"{verb}Tune", "parameters": {"id": "$response.body#/id"}}
        for verb in ("read", "delete")
    }
    return paths


def _paths(
    job_id: dict[str, Any], backend_name: dict[str, Any], names: list[str]
) -> dict[str, Any]:
    return {
        "/v1/generations": {
            "post": {
                "summary": "Submit a normalized generation request",
                "operationId": "submitGeneration",
                "security": TENANT,
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                    }
                ],
                "requestBody": _body(GenerationRequest),
                "responses": {
                    "202": {
                        **_json(Job, "accepted"),
                        "headers": {"Location": {"schema": {"type": "string"}}},
                        "links": {
                            "read": {
                                "operationId": "readGeneration",
                                "parameters": {"id": "$response.body#/id"},
                            },
                            "cancel": {
                                "operationId": "cancelGeneration",
                                "parameters": {"id": "$response.body#/id"},
                            },
                        },
                    },
                    **_errors(400, 401, 409, 413, 415, 422, 429, 503),
                },
            }
        },
        "/v1/generations/{id}": {
            "get": {
                "summary": "Read a job; `wait` long-polls until it is finished",
                "operationId": "readGeneration",
                "security": TENANT,
                "parameters": [
                    job_id,
                    _query("wait", {"type": "number", "minimum": 0, "maximum": 60}),
                ],
                "responses": {"200": _json(Job, "the job"), **_errors(400, 401, 404, 503)},
            },
            "delete": {
                "summary": "Cancel a job that has not finished",
                "operationId": "cancelGeneration",
                "security": TENANT,
                "parameters": [job_id],
                "responses": {"200": _json(Job, "canceled"), **_errors(401, 404, 409, 503)},
            },
        },
        "/v1/backends": {
            "get": {
                "summary": "Backends' health, load and capacity (a tenant sees those it may use)",
                "operationId": "listBackends",
                "security": EITHER,
                "responses": {"200": _json(BackendList, "the fleet"), **_errors(401, 503)},
            }
        },
        **{
            f"/v1/backends/{{name}}/{verb}": {
                "post": {
                    "summary": f"{what} (admin)",
                    "operationId": f"{verb}Backend",
                    "security": ADMIN,
                    "parameters": [backend_name],
                    "responses": {
                        "200": _json(BackendStatus, f"{verb}ed"),
                        **_errors(401, 403, 404, 503),
                    },
                }
            }
            for verb, what in (
                ("drain", "Stop routing new work to a backend"),
                ("undrain", "Resume routing to a backend"),
            )
        },
        "/v1/deliveries/dead": {
            "get": {
                "summary": "Dead-lettered client webhooks (admin: any tenant; tenant: its own)",
                "operationId": "listDeadLetters",
                "security": EITHER,
                "parameters": [
                    _query("tenant", {"type": "string"}),
                    _query("since", _since()),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                ],
                "responses": {
                    "200": _json(DeadLetterList, "dead letters"),
                    **_errors(400, 401, 404, 503),
                },
            }
        },
        "/v1/deliveries/{id}/replay": {
            "post": {
                "summary": "Deliver a dead-lettered webhook again (same id and body)",
                "operationId": "replayDelivery",
                "security": EITHER,
                "parameters": [job_id],
                "responses": {
                    "202": _json(Job, "queued for delivery"),
                    **_errors(401, 404, 409, 503),
                },
            }
        },
        "/v1/deliveries/replay": {
            "post": {
                "summary": "Replay every dead-lettered webhook since a time",
                "operationId": "replayDeliveries",
                "security": EITHER,
                "requestBody": _body(ReplayRequest),
                "responses": {
                    "202": _json(ReplayResult, "how many"),
                    **_errors(400, 401, 404, 413, 415, 422, 503),
                },
            }
        },
        "/v1/usage": {
            "get": {
                "summary": "Usage and estimated cost (tenant: its own; admin: any or all)",
                "operationId": "usage",
                "security": EITHER,
                "parameters": [
                    _query("from", {"type": "string", "format": "date"}),
                    _query("to", {"type": "string", "format": "date"}),
                    _query("group_by", {"type": "string", "enum": ["backend", "day"]}),
                    _query("tenant", {"type": "string"}),
                ],
                "responses": {"200": _json(UsageReport, "usage"), **_errors(400, 401, 404, 503)},
            }
        },
        "/webhooks/{backend}/{track_id}": {
            "post": {
                "summary": "Provider callbacks (authenticated by the token in the URL)",
                "operationId": "providerCallback",
                "parameters": [
                    _path("backend", {"type": "string", "enum": names}),
                    _path("track_id", {"type": "string"}),
                    _query("token", {"type": "string"}, required=True),
                ],
                "requestBody": {"content": {"application/json": {"schema": {}}}},
                "responses": {
                    "200": _json(WebhookAck, "acknowledged"),
                    **_errors(401, 404, 413, 503),
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "operationId": "healthz",
                "responses": {"200": _json(Health, "alive")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: not draining, store reachable and a routable backend",
                "operationId": "readyz",
                "responses": {
                    "200": _json(Readiness, "ready"),
                    "503": _json(Readiness, "not ready"),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus exposition",
                "operationId": "metrics",
                "responses": {
                    "200": {
                        "description": "metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }


def _since() -> dict[str, Any]:
    return {
        "anyOf": [
            {"type": "string", "format": "date-time"},
            {"type": "string", "pattern": EPOCH_PATTERN},
        ],
        "description": "An RFC 3339 time or epoch seconds",
    }


def add_routes(app: web.Application) -> None:
    import orjson

    app[DOCUMENT] = orjson.dumps(build_document(app[SETTINGS]))
    app.router.add_get("/openapi.json", serve)


async def serve(request: web.Request) -> web.Response:
    return web.Response(body=request.app[DOCUMENT], content_type="application/json")
