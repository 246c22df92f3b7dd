"""The OpenAPI document covers every route the app serves and says what each can answer.

schemathesis (tests/fuzz) checks the document against a live gateway; these are the cheap
structural facts a new route most easily forgets."""

from __future__ import annotations

import json
import re

from gateway.api.openapi import build_document
from gateway.app import create_app
from tests.helpers import backend, make_settings

SETTINGS = make_settings("memory://", 8080, [backend("ml-1", "http://127.0.0.1:9/api/v6/images")])


def test_every_route_is_documented_with_its_statuses() -> None:
    document = build_document(SETTINGS)
    paths = document["paths"]
    app = create_app(SETTINGS)
    served = {
        (route.method.lower(), re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", route.resource.canonical))
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    documented = {(method, path) for path, ops in paths.items() for method in ops}
    assert served <= documented, served - documented
    for path, operations in paths.items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            if operation.get("security"):
                assert {"401", "503"} <= statuses, (method, path)
            if "requestBody" in operation and operation["requestBody"].get("required"):
                assert {"413", "415", "422"} <= statuses, (method, path)


def test_constraints_are_json_schema_keywords() -> None:
    """pydantic writes ge/le/multiple_of when it cannot place a constraint: a silent hole."""
    text = json.dumps(build_document(SETTINGS))
    leaked = re.findall(r'"(ge|le|gt|lt|multiple_of|min_length|max_length)":', text)
    assert not leaked
