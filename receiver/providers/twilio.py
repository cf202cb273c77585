"""Twilio message status callbacks, sans I/O.

Form-encoded (`MessageSid`, `MessageStatus`, `ErrorCode`), signed in `X-Twilio-Signature`
over the public URL Twilio called plus the sorted form parameters, with the auth token.
Proxies rewrite URLs, so the public URL comes from configuration (`PUBLIC_URL`).
"""

from __future__ import annotations

from collections.abc import Mapping

from twilio.request_validator import RequestValidator

from core import products
from core.events import Event
from core.model import Status
from receiver.errors import Rejected
from receiver.providers import fields

PROVIDER = "twilio"
SIGNATURE = "x-twilio-signature"
# Every value of Twilio's MessageStatus enum, meanings from "Message Status values" of
# https://www.twilio.com/docs/messaging/api/message-resource#message-status-values and callbacks
# from "Message status changes triggering status callback requests" of
# https://www.twilio.com/docs/messaging/guides/outbound-message-status-in-status-callbacks
STATUS_CODES: Mapping[str, int] = {
    # The initial status of a new message, never a callback itself; `queued` follows the others.
    "accepted": products.CODE_OF[Status.REQUESTED],
    "scheduled": products.CODE_OF[Status.REQUESTED],
    "queued": products.CODE_OF[Status.REQUESTED],
    "sending": products.CODE_OF[Status.SENT],
    "sent": products.CODE_OF[Status.SENT],  # "The nearest upstream carrier accepted" it
    "delivered": products.CODE_OF[Status.DELIVERED],
    "read": products.CODE_OF[Status.READ],  # "Channels supported: RCS and WhatsApp"
    "undelivered": products.CODE_OF[Status.UNDELIVERED],
    "failed": products.CODE_OF[Status.FAILED],  # "failed to send": it never left Twilio
    # A scheduled message canceled before its SendAt: a terminal callback, never sent.
    "canceled": products.CODE_OF[Status.FAILED],
    # "[Deprecated]" and otherwise undocumented: "partially delivered" is delivery evidence.
    "partially_delivered": products.CODE_OF[Status.DELIVERED],
    # `receiving` and `received` are inbound statuses, never those of an outbound message:
    # left out, so they are recorded as unknown.
}
# `ChannelPrefix` names the channel of RCS, WhatsApp and other non-SMS messages ("Twilio's
# request to the StatusCallback URL" of https://www.twilio.com/docs/messaging/api/message-resource).
PREFIXED_CHANNELS = frozenset({"whatsapp", "rcs"})


def require_signature(headers: Mapping[str, str]) -> str:
    """The signature header; without one the request is refused before its body is read."""
    signature = headers.get(SIGNATURE)
    if not signature:
        raise Rejected("missing_signature", "X-Twilio-Signature is required", 401)
    return signature


def verify(
    validator: RequestValidator, url: str, form: Mapping[str, str], headers: Mapping[str, str]
) -> None:
    signature = require_signature(headers)
    # The validator compares in constant time (twilio.request_validator.compare).
    if not validator.validate(url, dict(form), signature):
        raise Rejected("bad_signature", "signature does not match", 401)


def parse(form: Mapping[str, str], received_ms: int) -> Event:
    sid = fields.message_id(form.get("MessageSid"), "MessageSid")
    name = fields.status_name(form.get("MessageStatus"), "MessageStatus")
    code = STATUS_CODES.get(name, products.UNKNOWN_CODE)
    return Event(PROVIDER, channel(form), sid, code, received_ms, received_ms, raw=name)


def channel(form: Mapping[str, str]) -> str:
    """The product: `ChannelPrefix` where it names one we bill apart, else the `whatsapp:`
    address scheme (message-resource, "Message Properties", `from`: "whatsapp:+1555..."),
    else SMS. An unknown prefix falls back likewise."""
    prefix = form.get("ChannelPrefix", "").lower()
    if prefix in PREFIXED_CHANNELS:
        return prefix
    # Only the address's scheme is read, never the number.
    sender = form.get("From", "") or form.get("To", "")
    return "whatsapp" if sender.startswith("whatsapp:") else "sms"
