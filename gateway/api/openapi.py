"""`GET /openapi.json`: an OpenAPI 3.1 document generated from the models, built once."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from adapters.normalized import GenerationRequest
from gateway.api.openapi_tunes import TUNE_MODELS, tune_paths, tune_webhooks
from gateway.api.schemas import (
    BackendList,
    BackendStatus,
    DeadLetterList,
    ErrorBody,
    Readiness,
    ReplayRequest,
    ReplayResult,
    WebhookEvent,
)
from gateway.api.usage import UsageReport
from gateway.jobs.model import Job

DOCUMENT = web.AppKey("openapi_document", bytes)

_MODELS: list[tuple[type[BaseModel], Any]] = [
    (GenerationRequest, "validation"),
    (Job, "serialization"),
    (ErrorBody, "serialization"),
    (BackendList, "serialization"),
    (BackendStatus, "serialization"),
    (Readiness, "serialization"),
    (WebhookEvent, "serialization"),
    (DeadLetterList, "serialization"),
    (ReplayRequest, "validation"),
    (ReplayResult, "serialization"),
    *TUNE_MODELS,
    (UsageReport, "serialization"),
]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(ErrorBody, "error") for s in statuses}


def build_document() -> dict[str, Any]:
    _, schemas = models_json_schema(_MODELS, ref_template="#/components/schemas/{model}")
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    job_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    backend_name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Image generation gateway", "version": "1"},
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/v1/generations": {
                "post": {
                    "summary": "Submit a normalized generation request",
                    "security": bearer,
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "schema": {"type": "string", "maxLength": 255},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref(GenerationRequest)}},
                    },
                    "responses": {
                        "202": _json(Job, "accepted"),
                        **_errors(400, 401, 409, 413, 415, 422, 429, 503),
                    },
                }
            },
            "/v1/generations/{id}": {
                "get": {
                    "summary": "Read a job; `wait` long-polls until it is finished",
                    "security": bearer,
                    "parameters": [
                        job_id,
                        {
                            "name": "wait",
                            "in": "query",
                            "schema": {"type": "number", "minimum": 0, "maximum": 60},
                        },
                    ],
                    "responses": {"200": _json(Job, "the job"), **_errors(400, 401, 404)},
                },
                "delete": {
                    "summary": "Cancel a job that has not finished",
                    "security": bearer,
                    "parameters": [job_id],
                    "responses": {"200": _json(Job, "canceled"), **_errors(401, 404, 409)},
                },
            },
            "/v1/backends": {
                "get": {
                    "summary": "Every backend's health, load and capacity",
                    "security": bearer,
                    "responses": {"200": _json(BackendList, "the fleet"), **_errors(401)},
                }
            },
            "/v1/backends/{name}/drain": {
                "post": {
                    "summary": "Stop routing new work to a backend (admin)",
                    "security": bearer,
                    "parameters": [backend_name],
                    "responses": {"200": _json(BackendStatus, "drained"), **_errors(401, 403, 404)},
                }
            },
            "/v1/backends/{name}/undrain": {
                "post": {
                    "summary": "Resume routing to a backend (admin)",
                    "security": bearer,
                    "parameters": [backend_name],
                    "responses": {
                        "200": _json(BackendStatus, "undrained"),
                        **_errors(401, 403, 404),
                    },
                }
            },
            "/v1/deliveries/dead": {
                "get": {
                    "summary": "Dead-lettered client webhooks (admin: any tenant; tenant: its own)",
                    "security": bearer,
                    "parameters": [
                        {"name": "tenant", "in": "query", "schema": {"type": "string"}},
                        {"name": "since", "in": "query", "schema": {"type": "string"}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                    ],
                    "responses": {
                        "200": _json(DeadLetterList, "dead letters"),
                        **_errors(400, 401, 404),
                    },
                }
            },
            "/v1/deliveries/{id}/replay": {
                "post": {
                    "summary": "Deliver a dead-lettered webhook again (same id and body)",
                    "security": bearer,
                    "parameters": [job_id],
                    "responses": {
                        "202": _json(Job, "queued for delivery"),
                        **_errors(401, 404, 409),
                    },
                }
            },
            "/v1/deliveries/replay": {
                "post": {
                    "summary": "Replay every dead-lettered webhook since a time",
                    "security": bearer,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref(ReplayRequest)}},
                    },
                    "responses": {"202": _json(ReplayResult, "how many"), **_errors(400, 401, 404)},
                }
            },
            "/v1/usage": {
                "get": {
                    "summary": "Usage and estimated cost (tenant: its own; admin: any or all)",
                    "security": bearer,
                    "parameters": [
                        {
                            "name": "from",
                            "in": "query",
                            "schema": {"type": "string", "format": "date"},
                        },
                        {
                            "name": "to",
                            "in": "query",
                            "schema": {"type": "string", "format": "date"},
                        },
                        {
                            "name": "group_by",
                            "in": "query",
                            "schema": {"type": "string", "enum": ["backend", "day"]},
                        },
                        {"name": "tenant", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {"200": _json(UsageReport, "usage"), **_errors(400, 401, 404)},
                }
            },
            "/webhooks/{backend}/{track_id}": {
                "post": {
                    "summary": "Provider callbacks (authenticated by the token in the URL)",
                    "parameters": [
                        {
                            "name": "backend",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "track_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "token",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                    ],
                    "requestBody": {"content": {"application/json": {"schema": {}}}},
                    "responses": {"200": {"description": "acknowledged"}, **_errors(401, 404)},
                }
            },
            "/healthz": {
                "get": {"summary": "Liveness", "responses": {"200": {"description": "alive"}}}
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: not draining, store reachable and a routable backend",
                    "responses": {
                        "200": _json(Readiness, "ready"),
                        "503": _json(Readiness, "not ready"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus exposition",
                    "responses": {"200": {"description": "metrics"}},
                }
            },
            **tune_paths(_ref, _json, _errors),
        },
        "webhooks": {
            "generation": {
                "post": {
                    "summary": "Delivered to the request's webhook_url when the job ends",
                    "requestBody": {
                        "content": {"application/json": {"schema": _ref(WebhookEvent)}}
                    },
                    "responses": {"200": {"description": "any 2xx acknowledges"}},
                }
            },
            **tune_webhooks(_ref),
        },
    }


def add_routes(app: web.Application) -> None:
    import orjson

    app[DOCUMENT] = orjson.dumps(build_document())
    app.router.add_get("/openapi.json", serve)


async def serve(request: web.Request) -> web.Response:
    return web.Response(body=request.app[DOCUMENT], content_type="application/json")
