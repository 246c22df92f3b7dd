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
from gateway.api.openapi_parts import (
    ADMIN,
    EITHER,
    TENANT,
    errors_of,
    given,
    json_body,
    json_of,
    nullable,
    path_param,
    query_param,
    ref,
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
    props["init_image"] = nullable(image)
    props["mask_image"] = nullable(image)
    props["webhook_url"] = {
        **nullable(url),
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
        {"if": given(props, "width"), "then": given(props, "height")},
        {"if": given(props, "height"), "then": given(props, "width")},
        {"not": given(props, "width", "aspect_ratio")},
        {"if": given(props, "mask_image"), "then": given(props, "init_image")},
        {"if": given(props, "strength"), "then": given(props, "init_image")},
    ]


def build_document(settings: Settings) -> dict[str, Any]:
    _, schemas = models_json_schema(_MODELS, ref_template="#/components/schemas/{model}")
    components = schemas["$defs"]
    tailor_request(components, settings)
    tailor_tune_request(components, settings, *url_schemas(settings))
    job_id = path_param("id", {"type": "string", "pattern": JOB_ID_PATTERN})
    names = sorted(b.name for b in settings.backends)
    backend_name = path_param("name", {"type": "string", "enum": names})
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
                    "requestBody": json_body(WebhookEvent),
                    "responses": {"200": {"description": "any 2xx acknowledges"}},
                }
            },
            **tune_webhooks(ref),
        },
    }


def _tunes() -> dict[str, Any]:
    """The tune operations, under the tenant key, with the store-outage 503 every route has."""
    paths = tune_paths(ref, json_of, errors_of)
    for operations in paths.values():
        for operation in operations.values():
            operation["security"] = TENANT
            operation["responses"].update(errors_of(503))
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
                "requestBody": json_body(GenerationRequest),
                "responses": {
                    "202": {
                        **json_of(Job, "accepted"),
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
                    **errors_of(400, 401, 409, 413, 415, 422, 429, 503),
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
                    query_param("wait", {"type": "number", "minimum": 0, "maximum": 60}),
                ],
                "responses": {
                    "200": json_of(Job, "the job"),
                    **errors_of(400, 401, 404, 503),
                },
            },
            "delete": {
                "summary": "Cancel a job that has not finished",
                "operationId": "cancelGeneration",
                "security": TENANT,
                "parameters": [job_id],
                "responses": {
                    "200": json_of(Job, "canceled"),
                    **errors_of(401, 404, 409, 503),
                },
            },
        },
        "/v1/backends": {
            "get": {
                "summary": "Backends' health, load and capacity (a tenant sees those it may use)",
                "operationId": "listBackends",
                "security": EITHER,
                "responses": {
                    "200": json_of(BackendList, "the fleet"),
                    **errors_of(401, 503),
                },
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
                        "200": json_of(BackendStatus, f"{verb}ed"),
                        **errors_of(401, 403, 404, 503),
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
                    query_param("tenant", {"type": "string"}),
                    query_param("since", _since()),
                    query_param("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                ],
                "responses": {
                    "200": json_of(DeadLetterList, "dead letters"),
                    **errors_of(400, 401, 404, 503),
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
                    "202": json_of(Job, "queued for delivery"),
                    **errors_of(401, 404, 409, 503),
                },
            }
        },
        "/v1/deliveries/replay": {
            "post": {
                "summary": "Replay every dead-lettered webhook since a time",
                "operationId": "replayDeliveries",
                "security": EITHER,
                "requestBody": json_body(ReplayRequest),
                "responses": {
                    "202": json_of(ReplayResult, "how many"),
                    **errors_of(400, 401, 404, 413, 415, 422, 503),
                },
            }
        },
        "/v1/usage": {
            "get": {
                "summary": "Usage and estimated cost (tenant: its own; admin: any or all)",
                "operationId": "usage",
                "security": EITHER,
                "parameters": [
                    query_param("from", {"type": "string", "format": "date"}),
                    query_param("to", {"type": "string", "format": "date"}),
                    query_param("group_by", {"type": "string", "enum": ["backend", "day"]}),
                    query_param("tenant", {"type": "string"}),
                ],
                "responses": {
                    "200": json_of(UsageReport, "usage"),
                    **errors_of(400, 401, 404, 503),
                },
            }
        },
        "/webhooks/{backend}/{track_id}": {
            "post": {
                "summary": "Provider callbacks (authenticated by the token in the URL)",
                "operationId": "providerCallback",
                "parameters": [
                    path_param("backend", {"type": "string", "enum": names}),
                    path_param("track_id", {"type": "string"}),
                    query_param("token", {"type": "string"}, required=True),
                ],
                "requestBody": {"content": {"application/json": {"schema": {}}}},
                "responses": {
                    "200": json_of(WebhookAck, "acknowledged"),
                    **errors_of(401, 404, 413, 503),
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "operationId": "healthz",
                "responses": {"200": json_of(Health, "alive")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: not draining, store reachable and a routable backend",
                "operationId": "readyz",
                "responses": {
                    "200": json_of(Readiness, "ready"),
                    "503": json_of(Readiness, "not ready"),
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
