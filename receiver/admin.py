"""Read side for operators: one message's state, and billing for invoice reconciliation."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.read import BillingRow
from receiver import auth
from receiver.context import Context
from receiver.errors import Rejected

MAX_BILLING_DAYS = 366


def message(request: Request) -> JSONResponse:
    ctx: Context = request.app.state.ctx
    auth.check_admin(request, ctx.settings.admin_token)
    provider, message_id = request.path_params["provider"], request.path_params["message_id"]
    view = ctx.reader.message(provider, message_id)
    if view is None:
        raise Rejected("message_not_found", "no callback seen for this message", 404)
    return JSONResponse(asdict(view))


def billing(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    auth.check_admin(request, ctx.settings.admin_token)
    start, end = _range(request.query_params.get("from"), request.query_params.get("to"))
    rows = ctx.reader.billing(start, end)
    if "text/csv" in request.headers.get("accept", ""):
        return Response(_csv(rows), media_type="text/csv")
    return JSONResponse(
        {"from": start.isoformat(), "to": end.isoformat(), "days": [_json(r) for r in rows]}
    )


def _range(start: str | None, end: str | None) -> tuple[date, date]:
    last = _day(end, "to") if end else datetime.now(UTC).date()
    default_days = min(30, (last - date.min).days)
    first = _day(start, "from") if start else last - timedelta(days=default_days)
    if first > last:
        raise Rejected("invalid_range", "from must not be after to")
    if (last - first).days >= MAX_BILLING_DAYS:
        raise Rejected("invalid_range", f"a range covers at most {MAX_BILLING_DAYS} days")
    return first, last


def _day(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise Rejected("invalid_date", f"{name} must be a date as YYYY-MM-DD") from exc


def _json(row: BillingRow) -> dict[str, object]:
    return {**asdict(row), "day": row.day.isoformat()}


def _csv(rows: list[BillingRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["day", "provider", "product", "billable"])
    writer.writerows([r.day.isoformat(), r.provider, r.product, r.billable] for r in rows)
    return out.getvalue()
