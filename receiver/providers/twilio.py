"""Twilio message status callbacks, sans I/O.

Form-encoded (`MessageSid`, `MessageStatus`, `ErrorCode`), signed in `X-Twilio-Signature`
over the public URL Twilio called plus the sorted form parameters, with the auth token.
Proxies rewrite URLs, so the public URL comes from configuration (`PUBLIC_URL`).
"""

from __future__ import annotations

from collections.abc import Mapping

from twilio.request_validator import RequestValidator

from core.events import Event
from receiver.errors import Rejected
from receiver.providers import fields
from workers import products
from workers.model import Status

PROVIDER = "twilio"
SIGNATURE = "x-twilio-signature"
C = products.CODE_OF
STATUS_CODES: Mapping[str, int] = {
    "accepted": C[Status.REQUESTED],
    "scheduled": C[Status.REQUESTED],
    "queued": C[Status.REQUESTED],
    "sending": C[Status.SENT],
    "sent": C[Status.SENT],
    "delivered": C[Status.DELIVERED],
    "read": C[Status.READ],
    "undelivered": C[Status.UNDELIVERED],
    "failed": C[Status.FAILED],
}


def verify(
    validator: RequestValidator, url: str, form: Mapping[str, str], headers: Mapping[str, str]
) -> None:
    signature = headers.get(SIGNATURE)
    if not signature:
        raise Rejected("missing_signature", "X-Twilio-Signature is required", 401)
    # The validator compares in constant time (twilio.request_validator.compare).
    if not validator.validate(url, dict(form), signature):
        raise Rejected("bad_signature", "signature does not match", 401)


def parse(form: Mapping[str, str], received_ms: int) -> Event:
    sid = fields.message_id(form.get("MessageSid"), "MessageSid")
    name = fields.status_name(form.get("MessageStatus"), "MessageStatus")
    code = STATUS_CODES.get(name, products.UNKNOWN_CODE)
    return Event(PROVIDER, channel(form), sid, code, received_ms, received_ms)


def channel(form: Mapping[str, str]) -> str:
    # Only the address's scheme is read, never the number.
    sender = form.get("From", "") or form.get("To", "")
    return "whatsapp" if sender.startswith("whatsapp:") else "sms"
