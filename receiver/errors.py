"""Refusals: each carries its HTTP status, a bounded metric reason and a message for the caller."""

from __future__ import annotations

from starlette.responses import JSONResponse


class Rejected(Exception):
    status_code = 400

    def __init__(self, reason: str, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        if status_code is not None:
            self.status_code = status_code

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": self.message}, self.status_code, headers=headers)


class Unavailable(Rejected):
    """Nothing was stored: the caller should retry later."""

    status_code = 503
