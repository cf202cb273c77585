"""Refusals: plain exceptions (no web framework) that the app turns into JSON answers.

Each carries its HTTP status, a bounded metric reason and a message for the caller, so the
sans-I/O provider modules can refuse without knowing how the answer is sent.
"""

from __future__ import annotations


class Rejected(Exception):
    status_code = 400

    def __init__(self, reason: str, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        if status_code is not None:
            self.status_code = status_code

    def body(self) -> dict[str, str]:
        return {"error": self.message}


class Unavailable(Rejected):
    """Nothing was stored: the caller should retry later."""

    status_code = 503
