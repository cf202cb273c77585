"""The console's provider scorecard (core.scorecard), over a chosen window."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from core import scorecard, timeparse
from core.clock import now_ms
from receiver.console.pages import ctx_of, view
from receiver.console.render import page
from receiver.console.session import Session
from receiver.errors import Rejected

WINDOWS = ("1h", "24h", "7d")


@view
def scores(request: Request, current: Session) -> Response:
    params = request.query_params
    window = params.get("window", "24h")
    if window not in WINDOWS:
        raise Rejected("invalid_window", f"window must be one of {', '.join(WINDOWS)}")
    now = now_ms()
    card = scorecard.scorecard(ctx_of(request).reader, timeparse.moment(window, now), now)
    return page(request, "scorecard.html", session=current, card=card, window=window,
                windows=WINDOWS)  # fmt: skip
