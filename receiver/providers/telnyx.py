"""Telnyx Verify webhooks, sans I/O: signature check and payload parsing.

Telnyx signs `"{telnyx-timestamp}|{raw body}"` with Ed25519 and sends the signature, base64,
in `telnyx-signature-ed25519`. The verification id (`data.payload.id`) is the message id.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from core import products
from core.events import Event
from core.model import Status
from receiver.errors import Rejected
from receiver.providers import fields

PROVIDER = "telnyx"
SIGNATURE = "telnyx-signature-ed25519"
TIMESTAMP = "telnyx-timestamp"
# "Verify delivery status updates" and "Delivery statuses" of
# https://developers.telnyx.com/docs/identity/verify/receiving-webhooks
EVENT_CODES: Mapping[str, int] = {
    "verify.sent": products.CODE_OF[Status.SENT],  # "sent to the upstream provider"
    "verify.delivered": products.CODE_OF[Status.DELIVERED],
    "verify.failed": products.CODE_OF[Status.FAILED],  # refined by FAILURE_CODES
}
# `verify.failed`'s `delivery_status` (same section); absent or another value: failed.
FAILURE_CODES: Mapping[str, int] = {
    # "Telnyx has failed to send the verification to the upstream provider."
    "sending_failed": products.CODE_OF[Status.FAILED],
    # "The upstream provider has failed to send the verification to the receiver."
    "delivery_failed": products.CODE_OF[Status.UNDELIVERED],
}
# "There is no indication whether or not the verification has reached the receiver." Telnyx
# does not say which event carries it, so any event but a completion with it is no report.
UNCONFIRMED = "delivery_unconfirmed"
# `verification.complete` is documented ("Flow" and its outcome table of
# https://developers.telnyx.com/docs/identity/verify/dtmf-confirm). `verify.completed` is in no
# Telnyx documentation (only a sample's README names it): kept as an undocumented alias.
COMPLETED = frozenset({"verification.complete", "verify.completed"})
# The completion's `data.payload.status`, per the DTMF outcome table.
COMPLETION_CODES: Mapping[str, int] = {
    "accepted": products.CODE_OF[Status.VERIFIED],  # "Confirmed": digit 1 pressed
    "invalid": products.CODE_OF[Status.UNVERIFIED],  # "Rejected": wrong digit
    "expired": products.CODE_OF[Status.UNVERIFIED],  # "Timed out": no keypress
    "error": products.CODE_OF[Status.UNDELIVERED],  # "Failed": call not answered
}


def public_key(encoded: str) -> VerifyKey:
    """The account's public key (base64) as configured; a bad one stops start-up."""
    try:
        return VerifyKey(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("TELNYX_PUBLIC_KEY must be a base64 Ed25519 public key") from exc


def require_signature(headers: Mapping[str, str]) -> tuple[str, str]:
    """The signature and timestamp; without them the request is refused before its body is
    read."""
    signature, timestamp = headers.get(SIGNATURE), headers.get(TIMESTAMP)
    if not signature or not timestamp:
        raise Rejected("missing_signature", "telnyx signature headers are required", 401)
    return signature, timestamp


def verify(
    key: VerifyKey, body: bytes, headers: Mapping[str, str], now: float, tolerance: int
) -> None:
    signature, timestamp = require_signature(headers)
    # isdigit() alone admits digits int() refuses ("²"): that would be a 500, not a 401.
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        raise Rejected("bad_signature", "telnyx-timestamp is not a unix time", 401)
    if abs(now - int(timestamp)) > tolerance:
        raise Rejected("stale_timestamp", f"timestamp is more than {tolerance} s off", 401)
    try:
        key.verify(timestamp.encode() + b"|" + body, base64.b64decode(signature, validate=True))
    except (BadSignatureError, binascii.Error, ValueError) as exc:
        raise Rejected("bad_signature", "signature does not match", 401) from exc


def parse(data: Mapping[str, Any], received_ms: int) -> Event:
    event_type = fields.status_name(fields.get(data, "data.event_type"), "data.event_type")
    verification = fields.message_id(fields.get(data, "data.payload.id"), "data.payload.id")
    at = fields.iso_ms(fields.get(data, "data.occurred_at"), received_ms)
    return Event(
        PROVIDER,
        channel(data),
        verification,
        code(event_type, data),
        at,
        received_ms,
        raw=raw(event_type, data),
    )


def channel(data: Mapping[str, Any]) -> str:
    kind = fields.get(data, "data.payload.type")
    kind = kind.lower() if isinstance(kind, str) else ""
    return kind if kind in products.TELNYX_CHANNELS else "other"


def code(event_type: str, data: Mapping[str, Any]) -> int:
    """The canonical code of an event; UNKNOWN_CODE for a name or outcome we do not know."""
    # Only strings are looked up: a list or an object in the JSON is no key (and no 500).
    delivery = _text(fields.get(data, "data.payload.delivery_status"))
    if event_type in COMPLETED:
        # An outcome: its status says more than any delivery status it may carry.
        status = _text(fields.get(data, "data.payload.status"))
        return COMPLETION_CODES.get(status, products.UNKNOWN_CODE)
    if delivery == UNCONFIRMED:
        return products.CODE_OF[Status.NO_DELIVERY_REPORT]
    if event_type == "verify.failed":
        return FAILURE_CODES.get(delivery, EVENT_CODES[event_type])
    return EVENT_CODES.get(event_type, products.UNKNOWN_CODE)


def raw(event_type: str, data: Mapping[str, Any]) -> str:
    """The event as Telnyx named it, with the outcome or delivery status that decided its
    code (`verify.failed:delivery_failed`); a value that is no plain name is left out."""
    if event_type in COMPLETED:
        detail = _text(fields.get(data, "data.payload.status"))
    else:
        detail = _text(fields.get(data, "data.payload.delivery_status"))
    if detail and fields.NAME_RE.fullmatch(detail):
        return f"{event_type}:{detail}"
    return event_type


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
