"""GET /stats: the provider scorecard (core.scorecard) as JSON, behind the admin token."""

from __future__ import annotations

from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import JSONResponse

from core import scorecard, timeparse
from core.clock import now_ms
from receiver.context import Context
from receiver.errors import Rejected

DEFAULT_SINCE = "24h"


def stats(request: Request) -> JSONResponse:
    ctx: Context = request.app.state.ctx
    ctx.guard.check_admin(request, ctx.credentials.admin_tokens)
    params, now = request.query_params, now_ms()
    since = _moment(params.get("since") or DEFAULT_SINCE, "since", now)
    until = _moment(params["until"], "until", now) if params.get("until") else now
    if since >= until:
        raise Rejected("invalid_range", "since must be before until")
    return JSONResponse(asdict(scorecard.scorecard(ctx.reader, since, until)))


def _moment(text: str, name: str, now: int) -> int:
    try:
        return timeparse.moment(text, now)
    except ValueError as exc:
        raise Rejected(f"invalid_{name}", f"{name}: {exc}") from exc
