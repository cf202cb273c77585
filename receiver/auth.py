"""The admin token check: constant-time, any of several tokens, and closed when none is
configured."""

from __future__ import annotations

from starlette.requests import Request

from receiver.credentials import Tokens
from receiver.errors import Rejected


def check_admin(request: Request, tokens: Tokens | None) -> None:
    if tokens is None:
        raise Rejected("admin_closed", "ADMIN_TOKEN is not configured", 403)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not tokens.matches(given.strip()):
        raise Rejected("bad_admin_token", "a valid bearer token is required", 401)
