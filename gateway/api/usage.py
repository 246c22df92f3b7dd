"""`GET /v1/usage`: a tenant's usage and estimated cost (admin: any tenant, or all).

Days are UTC calendar days, `from` and `to` both included; without them, the current
month so far. `group_by=backend` or `day` splits each tenant's rows; without it, one row
per tenant.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.callers import acting_for
from gateway.context import services
from gateway.errors import BadRequest, field_detail
from gateway.store.usage import Totals

MAX_DAYS = 93
GROUPS = ("backend", "day")


class UsageTotals(BaseModel):
    jobs: int = Field(description="Succeeded jobs")
    images: int = Field(description="Images delivered")
    megapixel_steps: float
    provider_seconds: float = Field(description="First submission to result, per job")
    cost: float = Field(description="Estimated from the backends' price table, in `currency`")


class UsageRow(UsageTotals):
    tenant: str
    backend: str | None = None
    day: date | None = None


class UsageReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: date = Field(alias="from")
    to: date
    currency: str
    group_by: Literal["backend", "day"] | None
    usage: list[UsageRow]
    total: UsageTotals


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/usage", read)


def _day(name: str, raw: str | None, default: date) -> date:
    if raw is None:
        return default
    try:
        if len(raw) == 10:
            return date.fromisoformat(raw)
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC).date()
    except ValueError:
        raise BadRequest(
            f"{name}: a date (YYYY-MM-DD) or an ISO 8601 time",
            details=[field_detail(name, "not a date", "query")],
        ) from None


def _range(request: web.Request) -> tuple[date, date, list[date]]:
    """`from`, `to` and the days between. Any two dates are a valid question (the OpenAPI
    document cannot relate two parameters): `to` before `from` is an empty report, and a
    range past MAX_DAYS covers the MAX_DAYS ending at `to` (the report's `from` says so)."""
    today = datetime.now(UTC).date()
    first = _day("from", request.query.get("from"), today.replace(day=1))
    last = _day("to", request.query.get("to"), today)
    if last >= first:
        first = max(first, last - timedelta(days=MAX_DAYS - 1))
    return first, last, [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _group(request: web.Request) -> Literal["backend", "day"] | None:
    raw = request.query.get("group_by")
    if raw is None:
        return None
    if raw == "backend":
        return "backend"
    if raw == "day":
        return "day"
    raise BadRequest(
        "group_by: backend or day", details=[field_detail("group_by", "unknown grouping", "query")]
    )


def _row(tenant: str, totals: Totals, **key: str | date) -> UsageRow:
    return UsageRow.model_validate({"tenant": tenant, **key, **totals.view()})


async def read(request: web.Request) -> web.Response:
    tenants = acting_for(request, request.query.get("tenant"))
    (first, last, days), group_by = _range(request), _group(request)
    s = services(request)
    found = await s.usage.days(tenants, [d.isoformat() for d in days])
    grouped: dict[tuple[str, str], Totals] = {}
    overall = Totals()
    for usage in found:
        for backend, totals in usage.backends.items():
            key = {"backend": backend, "day": usage.day, None: ""}[group_by]
            into = grouped.setdefault((usage.tenant, key), Totals())
            into.add_all(totals)
            overall.add_all(totals)
    rows = [
        _row(tenant, totals, **({group_by: key} if group_by else {}))
        for (tenant, key), totals in sorted(grouped.items())
    ]
    report = UsageReport(
        from_=first,
        to=last,
        currency=s.settings.usage.currency,
        group_by=group_by,
        usage=rows,
        total=UsageTotals.model_validate(overall.view()),
    )
    return web.Response(body=report.model_dump_json(by_alias=True), content_type="application/json")
