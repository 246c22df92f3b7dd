"""The client webhook's body and id: rendered once, when the job ends, then never changed."""

from __future__ import annotations

from adapters.normalized import dump_json
from gateway.jobs.model import JobRecord, JobStatus

EVENT_TYPES = {
    JobStatus.SUCCEEDED: "generation.succeeded",
    JobStatus.FAILED: "generation.failed",
}


def webhook_id(job_id: str) -> str:
    """The Standard Webhooks message id: one per job's final event, the same on every retry."""
    return f"msg_{job_id.removeprefix('gen_')}"


def render_event(record: JobRecord) -> bytes:
    data = record.public_data()
    return dump_json({"type": EVENT_TYPES[record.status], "data": data})
