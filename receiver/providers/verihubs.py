"""Verihubs callbacks, sans I/O: query parameters in, a normalised Event (or a refusal) out.

Verihubs WhatsApp OTP V2, WhatsApp Message V2 and SMS OTP call
`<callback_url>?session_id=<uuid>&status=<int>`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from core import products
from core.events import Event
from receiver.errors import Rejected
from receiver.providers import fields

PROVIDER = "verihubs"
STATUS_RE = re.compile(r"-?[0-9]{1,6}")
MAX_CODE = 99_999


def check_product(product: str) -> None:
    if products.product(PROVIDER, product) is None:
        raise Rejected("unknown_product", f"unknown product {product[:40]!r}", 404)


def parse(product: str, params: Mapping[str, str], received_ms: int) -> Event:
    check_product(product)
    session_id = fields.message_id(params.get("session_id"), "session_id")
    return Event(PROVIDER, product, session_id, status(params), received_ms, received_ms)


def status(params: Mapping[str, str]) -> int:
    value = params.get("status")
    if value is None:
        raise Rejected("missing_status", "status is required")
    # int() accepts less white space than strip() removes: parse exactly what was checked.
    value = value.strip()
    if not STATUS_RE.fullmatch(value):
        raise Rejected("invalid_status", "status must be an integer")
    code = int(value)
    if not 0 <= code <= MAX_CODE:
        raise Rejected("invalid_status", f"status must be between 0 and {MAX_CODE}")
    return code
