"""ComfyUI's `POST /prompt` validation, as the simulator applies it.

Error shapes follow ComfyUI's `execution.validate_prompt`: a top-level `error` with a
`type` (`invalid_prompt`, `prompt_no_outputs`, `prompt_outputs_failed_validation`) and
per-node `node_errors`. The simulator is stricter than ComfyUI in a few ways, so adapter
bugs surface in tests: every node is checked (not only those feeding an output), unknown
inputs and cycles are refused, numbers must already be numbers, links must be links,
and sides must be multiples of 8.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

from adapters.comfyui import tables
from adapters.comfyui.schema import (
    NODES,
    Choice,
    InputFile,
    InputSpec,
    Linked,
    ModelFile,
    Number,
    Text,
)


@dataclass
class Verdict:
    error: dict[str, Any] | None = None
    node_errors: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


def _error(kind: str, message: str, details: str = "", **extra: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


def validate_prompt(graph: Any, uploaded: Container[str]) -> Verdict:
    """Check a graph the way ComfyUI does before queueing it; `uploaded` are input files."""
    if not isinstance(graph, dict) or not graph:
        return Verdict(_error("invalid_prompt", "The prompt must be a non-empty object of nodes."))
    for node_id, node in graph.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            return Verdict(
                _error(
                    "invalid_prompt",
                    "Cannot execute because a node is missing the class_type property.",
                    f"Node ID '#{node_id}'",
                )
            )
        if node["class_type"] not in NODES:
            return Verdict(
                _error(
                    "invalid_prompt",
                    f"Cannot execute because node {node['class_type']} does not exist.",
                    f"Node ID '#{node_id}'",
                )
            )
    outputs = [nid for nid, node in graph.items() if NODES[node["class_type"]].output_node]
    if not outputs:
        return Verdict(_error("prompt_no_outputs", "Prompt has no outputs"))

    node_errors: dict[str, Any] = {}
    for node_id, node in graph.items():
        reasons = _node_reasons(graph, node, uploaded)
        reasons += _cycle(graph, node_id)
        if reasons:
            node_errors[node_id] = {
                "errors": reasons,
                "dependent_outputs": outputs,
                "class_type": node["class_type"],
            }
    if node_errors:
        details = "\n".join(
            f"{e['message']}: {e['details']}" for n in node_errors.values() for e in n["errors"]
        )
        failed = _error(
            "prompt_outputs_failed_validation", "Prompt outputs failed validation", details
        )
        return Verdict(failed, node_errors, [])
    return Verdict(None, {}, outputs)


def _node_reasons(
    graph: dict[str, Any], node: dict[str, Any], uploaded: Container[str]
) -> list[dict[str, Any]]:
    spec = NODES[node["class_type"]]
    inputs = node.get("inputs", {})
    if not isinstance(inputs, dict):
        return [_error("invalid_input_type", "Node inputs must be an object", "inputs")]
    reasons = []
    for name in spec.required:
        if name not in inputs:
            reasons.append(
                _error("required_input_missing", "Required input is missing", name, input_name=name)
            )
    known = {**spec.required, **spec.optional}
    for name, value in inputs.items():
        if name not in known:
            reasons.append(
                _error("unknown_input", "Input is not known to this node", name, input_name=name)
            )
            continue
        problem = _check(graph, name, known[name], value, uploaded)
        if problem is not None:
            reasons.append(problem)
    return reasons


def _check(
    graph: dict[str, Any], name: str, spec: InputSpec, value: Any, uploaded: Container[str]
) -> dict[str, Any] | None:
    extra = {"input_name": name, "received_value": value}
    if isinstance(spec, Linked):
        return _check_link(graph, name, spec, value)
    if isinstance(value, list):
        return _error("invalid_input_type", "Input must be a value, not a link", name, **extra)
    if isinstance(spec, Number):
        return _check_number(name, spec, value)
    if isinstance(spec, Text):
        if not isinstance(value, str):
            return _error(
                "invalid_input_type",
                "Failed to convert an input value to a STRING value",
                name,
                **extra,
            )
        return None
    if isinstance(spec, Choice):
        if value not in spec.values:
            return _error(
                "value_not_in_list",
                "Value not in list",
                f"{name}: '{value}' not in {list(spec.values)}",
                **extra,
            )
        return None
    if isinstance(spec, ModelFile):
        if not (isinstance(value, str) and value.lower().endswith(tables.MODEL_FILE_SUFFIXES)):
            return _error(
                "value_not_in_list",
                "Value not in list",
                f"{name}: '{value}' not in models/{spec.folder}",
                **extra,
            )
        return None
    assert isinstance(spec, InputFile)
    if not isinstance(value, str) or value not in uploaded:
        return _error(
            "custom_validation_failed",
            "Custom validation failed for node",
            f"{name} - Invalid image file: {value}",
            **extra,
        )
    return None


def _check_link(
    graph: dict[str, Any], name: str, spec: Linked, value: Any
) -> dict[str, Any] | None:
    extra = {"input_name": name, "received_value": value}
    if not (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    ):
        return _error(
            "bad_linked_input",
            "Bad linked input, must be a length-2 list of [node_id, slot_index]",
            name,
            **extra,
        )
    source = graph.get(value[0])
    if source is None:
        return _error("bad_linked_input", f"Linked node {value[0]} does not exist", name, **extra)
    produced = NODES[source["class_type"]].outputs
    received = produced[value[1]] if 0 <= value[1] < len(produced) else "nothing"
    if received != spec.type:
        return _error(
            "return_type_mismatch",
            "Return type mismatch between linked nodes",
            f"{name}, received_type({received}) mismatch input_type({spec.type})",
            linked_node=value,
            **extra,
        )
    return None


def _check_number(name: str, spec: Number, value: Any) -> dict[str, Any] | None:
    extra = {"input_name": name, "received_value": value}
    allowed = (int,) if spec.kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, allowed):
        kind = "INT" if spec.kind is int else "FLOAT"
        return _error(
            "invalid_input_type",
            f"Failed to convert an input value to a {kind} value",
            name,
            **extra,
        )
    if value < spec.low:
        return _error(
            "value_smaller_than_min",
            f"Value {value} smaller than min of {spec.low:g}",
            name,
            **extra,
        )
    if value > spec.high:
        return _error(
            "value_bigger_than_max",
            f"Value {value} bigger than max of {spec.high:g}",
            name,
            **extra,
        )
    if spec.multiple and value % spec.multiple:
        return _error(
            "custom_validation_failed",
            f"Value {value} is not a multiple of {spec.multiple}",
            name,
            **extra,
        )
    return None


def _cycle(graph: dict[str, Any], start: str) -> list[dict[str, Any]]:
    """A node that (indirectly) feeds itself can never run."""
    seen: set[str] = set()
    stack = list(_sources(graph, start))
    while stack:
        node_id = stack.pop()
        if node_id == start:
            return [_error("dependency_cycle", "Dependency cycle detected", start)]
        if node_id not in seen:
            seen.add(node_id)
            stack.extend(_sources(graph, node_id))
    return []


def _sources(graph: dict[str, Any], node_id: str) -> list[str]:
    inputs = graph.get(node_id, {}).get("inputs", {})
    if not isinstance(inputs, dict):
        return []
    return [
        v[0]
        for v in inputs.values()
        if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and v[0] in graph
    ]
