"""The admin token check: constant-time, and closed when the token is not configured."""

from __future__ import annotations

import hmac

from starlette.datastructures import Secret
from starlette.requests import Request

from receiver.errors import Rejected


def check_admin(request: Request, expected: Secret | None) -> None:
    if expected is None:
        raise Rejected("admin_closed", "ADMIN_TOKEN is not configured", 403)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), str(expected).encode()
    ):
        raise Rejected("bad_admin_token", "a valid bearer token is required", 401)
