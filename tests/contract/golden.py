"""Golden files for adapter conversions: the exact provider calls and warnings.

Each case is `tests/contract/golden/<adapter>/<case>.json`. Run with UPDATE_GOLDEN=1 to
(re)write them after an intended change, then review the diff like code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from adapters.base import Plan

ROOT = Path(__file__).parent / "golden"


def plan_document(request: dict[str, Any], options: dict[str, Any], plan: Plan) -> dict[str, Any]:
    return {
        "request": request,
        "options": options,
        "model_id": plan.model_id,
        "submissions": [
            {"endpoint": s.endpoint, "images": s.images, "body": s.body} for s in plan.submissions
        ],
        "warnings": plan.warnings,
        "inexact": plan.inexact,
    }


def check_golden(adapter: str, case: str, document: dict[str, Any]) -> None:
    path = ROOT / adapter / f"{case}.json"
    rendered = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if os.environ.get("UPDATE_GOLDEN") == "1" or not path.exists():
        if os.environ.get("CI") and not path.exists():
            raise AssertionError(
                f"golden file {path} is missing; run with UPDATE_GOLDEN=1 and commit it"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered)
        return
    expected = path.read_text()
    assert rendered == expected, (
        f"{path.name} differs from the golden file (UPDATE_GOLDEN=1 rewrites)"
    )
