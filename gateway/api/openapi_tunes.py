"""The OpenAPI entries of `/v1/tunes` and the `tune.*` webhooks (merged into openapi.py's)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from adapters.normalized_tune import (
    CHARACTERISTIC_PATTERN,
    CLASS_WORD_PATTERN,
    TOKEN_PATTERN,
    TuneRequest,
)
from gateway.config import Settings
from gateway.tunes.model import Tune, TuneEvent, TuneList

TUNE_MODELS: list[tuple[type[BaseModel], Any]] = [
    (TuneRequest, "validation"),
    (Tune, "serialization"),
    (TuneList, "serialization"),
    (TuneEvent, "serialization"),
]

Ref = Callable[[type[BaseModel]], dict[str, str]]
Json = Callable[[type[BaseModel], str], dict[str, Any]]
Errors = Callable[..., dict[str, Any]]


def tune_paths(ref: Ref, json: Json, errors: Errors, max_wait: float = 60) -> dict[str, Any]:
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    tune_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "/v1/tunes": {
            "post": {
                "summary": "Train a fine-tune on a backend that can train",
                "description": (
                    "422 when a field is invalid or no backend the request may use can train "
                    "it; 503 when every such backend is ejected or drained."
                ),
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
                    "content": {"application/json": {"schema": ref(TuneRequest)}},
                },
                "responses": {
                    "202": json(Tune, "accepted (training, or failed before any backend took it)"),
                    **errors(400, 401, 409, 413, 415, 422, 429, 503),
                },
            },
            "get": {
                "summary": "The tenant's tunes, newest first, paginated",
                "security": bearer,
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                    },
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {"200": json(TuneList, "a page"), **errors(400, 401)},
            },
        },
        "/v1/tunes/{id}": {
            "get": {
                "summary": "Read a tune; `wait` long-polls until it is finished",
                "security": bearer,
                "parameters": [
                    tune_id,
                    {
                        "name": "wait",
                        "in": "query",
                        "schema": {"type": "number", "minimum": 0, "maximum": max_wait},
                    },
                ],
                "responses": {"200": json(Tune, "the tune"), **errors(400, 401, 404)},
            },
            "delete": {
                "summary": "Cancel a tune still training, or delete a finished one at the provider",
                "security": bearer,
                "parameters": [tune_id],
                "responses": {
                    "200": json(Tune, "canceled (training stopped at the provider)"),
                    "204": {"description": "deleted at the provider and here"},
                    **errors(401, 404, 409, 502),
                },
            },
        },
    }


def tune_webhooks(ref: Ref) -> dict[str, Any]:
    return {
        "tune": {
            "post": {
                "summary": "Delivered to the tune's webhook_url when training ends",
                "requestBody": {"content": {"application/json": {"schema": ref(TuneEvent)}}},
                "responses": {"200": {"description": "any 2xx acknowledges"}},
            }
        }
    }


def tailor_tune_request(
    schemas: dict[str, Any], settings: Settings, url: dict[str, Any], image: dict[str, Any]
) -> None:
    """The constraints the validators enforce that pydantic's schema leaves out."""
    props = schemas["TuneRequest"]["properties"]
    props["name"]["pattern"] = CLASS_WORD_PATTERN
    props["token"]["anyOf"][0]["pattern"] = TOKEN_PATTERN
    props["images"]["items"] = image
    props["images"]["minItems"] = settings.tunes.min_images
    props["images"]["maxItems"] = settings.tunes.max_images
    props["webhook_url"] = {"anyOf": [url, {"type": "null"}], "default": None}
    props["characteristics"]["anyOf"][0]["propertyNames"] = {"pattern": CHARACTERISTIC_PATTERN}
