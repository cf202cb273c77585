"""Verihubs callbacks, sans I/O: query parameters in, a normalised Event (or a refusal) out.

Verihubs WhatsApp OTP V2 and Message V2 call `<callback_url>?session_id=<uuid>&status=<int>`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from core.events import Event
from receiver.errors import Rejected
from workers import products

PROVIDER = "verihubs"
MAX_ID = 128
# Verihubs sends UUIDs; allow the id alphabets of other providers' ids, nothing that could
# smuggle separators or markup into keys, logs or the admin API.
ID_RE = re.compile(r"[A-Za-z0-9._:=+-]+")
STATUS_RE = re.compile(r"-?[0-9]{1,6}")
MAX_CODE = 99_999


def parse(product: str, params: Mapping[str, str], received_ms: int) -> Event:
    if products.product(PROVIDER, product) is None:
        raise Rejected("unknown_product", f"unknown product {product[:40]!r}", 404)
    return Event(PROVIDER, product, session_id(params), status(params), received_ms, received_ms)


def session_id(params: Mapping[str, str]) -> str:
    value = params.get("session_id")
    if value is None:
        raise Rejected("missing_session_id", "session_id is required")
    if not value:
        raise Rejected("invalid_session_id", "session_id is empty")
    if len(value) > MAX_ID:
        raise Rejected("invalid_session_id", f"session_id is longer than {MAX_ID} characters")
    if not ID_RE.fullmatch(value):
        raise Rejected("invalid_session_id", "session_id has characters outside [A-Za-z0-9._:=+-]")
    return value


def status(params: Mapping[str, str]) -> int:
    value = params.get("status")
    if value is None:
        raise Rejected("missing_status", "status is required")
    if not STATUS_RE.fullmatch(value.strip()):
        raise Rejected("invalid_status", "status must be an integer")
    code = int(value)
    if not 0 <= code <= MAX_CODE:
        raise Rejected("invalid_status", f"status must be between 0 and {MAX_CODE}")
    return code
