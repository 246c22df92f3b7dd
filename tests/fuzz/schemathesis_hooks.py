"""Loaded by schemathesis (SCHEMATHESIS_HOOKS) in the live-gateway run.

One check replaces the built-in `positive_data_acceptance`, narrowed, not widened: a
schema-valid request may be refused with 422 only for what a schema cannot express and the
document says so (`url_refused`: the host resolves somewhere internal or nowhere;
`no_eligible_backend`: no backend the tenant may use can serve this combination). Any other
rejection of schema-valid data fails, exactly as the built-in check would.
"""

from __future__ import annotations

import json

import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

SEMANTIC = {"url_refused", "no_eligible_backend"}


@schemathesis.check
def positive_data_acceptance_semantic(ctx, response, case):  # type: ignore[no-untyped-def]
    try:
        return positive_data_acceptance(ctx, response, case)
    except Exception:
        if response.status_code == 422:
            try:
                code = json.loads(response.content)["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = None
            if code in SEMANTIC:
                return None
        raise
