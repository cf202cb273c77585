"""Read side for operators: one message's state, and billing for invoice reconciliation."""

from __future__ import annotations

import csv
import io
from calendar import monthrange
from collections.abc import Mapping
from dataclasses import asdict
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core import products
from core.clock import now_ms
from core.read import STATES, BillingRow
from core.settings import PROVIDERS, zone
from core.timeparse import moment
from receiver.context import Context
from receiver.errors import Rejected
from receiver.providers import fields

MAX_BILLING_DAYS = 366
DEFAULT_PAGE, MAX_PAGE = 50, 500
MAX_CURSOR = 400
PRODUCT_NAMES = tuple(dict.fromkeys(p.name for p in products.PRODUCTS.values()))
DEFAULT_BILLING_DAYS = 31
FORMATS = ("json", "csv")


def message(request: Request) -> JSONResponse:
    ctx: Context = request.app.state.ctx
    ctx.guard.check_admin(request, ctx.credentials.admin_tokens)
    provider = request.path_params["provider"]
    if provider not in PROVIDERS:
        known = ", ".join(PROVIDERS)
        raise Rejected("unknown_provider", f"unknown provider {provider[:40]!r} ({known})", 404)
    # Validated as callbacks validate it: only an id a callback could have stored.
    message_id = fields.message_id(request.path_params["message_id"], "message_id")
    view = ctx.reader.message(provider, message_id)
    if view is None:
        raise Rejected("message_not_found", "no callback seen for this message", 404)
    return JSONResponse(asdict(view))


def messages(request: Request) -> JSONResponse:
    """The messages still tracked, newest first, filtered from the search index."""
    ctx: Context = request.app.state.ctx
    ctx.guard.check_admin(request, ctx.credentials.admin_tokens)
    params, now = request.query_params, now_ms()
    since = _moment(params.get("since"), "since", now)
    until = _moment(params.get("until"), "until", now)
    if since is not None and until is not None and since >= until:
        raise Rejected("invalid_range", "since must be before until")
    cursor = params.get("cursor")
    if cursor is not None and (not cursor or len(cursor) > MAX_CURSOR):
        raise Rejected("invalid_cursor", "cursor is not one this API returned")
    try:
        page = ctx.reader.search(
            providers=_names(params.get("provider"), "provider", PROVIDERS),
            products=_names(params.get("product"), "product", PRODUCT_NAMES),
            states=_names(params.get("state"), "state", STATES),
            since_ms=since,
            until_ms=until,
            limit=_limit(params.get("limit")),
            cursor=cursor,
        )
    except ValueError as exc:
        raise Rejected("invalid_cursor", str(exc)) from exc
    return JSONResponse(
        {"messages": [asdict(m) for m in page.messages], "next_cursor": page.next_cursor}
    )


def _names(value: str | None, name: str, known: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated filter; absent or empty: no filter."""
    if not value:
        return ()
    names = tuple(v.strip() for v in value.split(","))
    wrong = [n for n in names if n not in known]
    if wrong:
        shown = ", ".join(repr(w[:40]) for w in wrong[:3])
        raise Rejected(f"invalid_{name}", f"unknown {name} {shown} (one of {', '.join(known)})")
    return names


def _moment(value: str | None, name: str, now: int) -> int | None:
    if value is None:
        return None
    try:
        return moment(value, now)
    except ValueError as exc:
        raise Rejected("invalid_time", f"{name}: {exc}") from exc


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_PAGE
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_PAGE:
        raise Rejected("invalid_limit", f"limit must be an integer from 1 to {MAX_PAGE}")
    return int(value)


def billing(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    ctx.guard.check_admin(request, ctx.credentials.admin_tokens)
    params = request.query_params
    start, end, tz = billing_query(params, ctx.settings.billing_timezone)
    rows = ctx.reader.billing(start, end, tz)
    if _format(params.get("format"), request.headers.get("accept", "")) == "csv":
        return billing_csv(rows, start, end, tz)
    return JSONResponse(
        {
            "from": start.isoformat(),
            "to": end.isoformat(),
            "tz": tz.key,
            "days": [_json(r) for r in rows],
        }
    )


def billing_query(params: Mapping[str, str], default: ZoneInfo) -> tuple[date, date, ZoneInfo]:
    """The days and zone a billing request asks for (`from`, `to`, `month`, `tz`): the rules
    of GET /billing, which the console follows too. Rejected (400) for a wrong one."""
    tz = _zone(params.get("tz"), default)
    start, end = _range(params.get("from"), params.get("to"), params.get("month"), tz)
    return start, end, tz


def billing_csv(rows: list[BillingRow], start: date, end: date, tz: ZoneInfo) -> Response:
    name = f"billing-{start}-{end}-{tz.key.replace('/', '_')}.csv"
    disposition = f'attachment; filename="{name}"'
    return Response(_csv(rows), media_type="text/csv", headers={"Content-Disposition": disposition})


def _zone(name: str | None, default: ZoneInfo) -> ZoneInfo:
    if name is None:
        return default
    try:
        return zone(name)
    except ValueError as exc:
        raise Rejected("invalid_timezone", str(exc)) from exc


def _format(name: str | None, accept: str) -> str:
    """`format=` wins over the Accept header."""
    if name is None:
        return "csv" if "text/csv" in accept else "json"
    if name not in FORMATS:
        raise Rejected("invalid_format", "format must be csv or json")
    return name


def _range(
    start: str | None, end: str | None, month: str | None, tz: ZoneInfo
) -> tuple[date, date]:
    """Days of the zone, both ends included: a month, or from/to; by default the last
    DEFAULT_BILLING_DAYS days up to today (or up to `to`)."""
    if month is not None:
        if start is not None or end is not None:
            raise Rejected("invalid_range", "give month, or from and to, not both")
        return _month(month)
    last = _day(end, "to") if end else datetime.now(tz).date()
    default = last - timedelta(days=min(DEFAULT_BILLING_DAYS - 1, (last - date.min).days))
    first = _day(start, "from") if start else default
    if first > last:
        raise Rejected("invalid_range", "from must not be after to")
    if (last - first).days >= MAX_BILLING_DAYS:
        raise Rejected("invalid_range", f"a range covers at most {MAX_BILLING_DAYS} days")
    return first, last


def _month(value: str) -> tuple[date, date]:
    try:
        first = datetime.strptime(value, "%Y-%m").date() if len(value) == 7 else None
    except ValueError:
        first = None
    if first is None:
        raise Rejected("invalid_month", "month must be YYYY-MM")
    return first, first.replace(day=monthrange(first.year, first.month)[1])


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
