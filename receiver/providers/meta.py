"""Meta WhatsApp Cloud API status webhooks, sans I/O.

`GET` is the subscription handshake; `POST` bodies are signed with `X-Hub-Signature-256`
(`sha256=` + hex HMAC-SHA256 of the raw body with the app secret) and may carry many
statuses: entry[].changes[].value.statuses[], each keyed by its `wamid`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator, Mapping
from typing import Any

from core import products
from core.events import Event
from core.model import Status
from receiver.errors import Rejected
from receiver.providers import fields

PROVIDER = "meta"
PRODUCT = "whatsapp"
SIGNATURE = "x-hub-signature-256"
MAX_CHALLENGE = 128
# `<STATUS>` in "Parameters" of
# https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/status
STATUS_CODES: Mapping[str, int] = {
    "sent": products.CODE_OF[Status.SENT],  # "successfully sent from our servers"
    "delivered": products.CODE_OF[Status.DELIVERED],
    "read": products.CODE_OF[Status.READ],  # "displayed in an open chat thread"
    # "the first time a voice message is played": delivered and consumed, as read is.
    "played": products.CODE_OF[Status.READ],
    "failed": products.CODE_OF[Status.FAILED],  # "failure to send or deliver the message"
}
# `pricing.type` values that say billable (same page and section; and "Webhooks" of
# https://developers.facebook.com/documentation/business-messaging/whatsapp/pricing). Every
# `free_*` type (free_customer_service, free_entry_point, free_group_customer_service) is free.
BILLABLE_TYPE = "regular"
FREE_TYPE_PREFIX = "free_"


def handshake(params: Mapping[str, str], verify_token: str) -> str:
    """The challenge to echo when Meta subscribes with our verify token."""
    given = params.get("hub.verify_token", "")
    if params.get("hub.mode") != "subscribe" or not hmac.compare_digest(
        given.encode(), verify_token.encode()
    ):
        raise Rejected("bad_verify_token", "verification failed", 403)
    challenge = params.get("hub.challenge", "")
    if not (challenge.isascii() and challenge.isalnum()) or len(challenge) > MAX_CHALLENGE:
        raise Rejected("invalid_challenge", "hub.challenge must be alphanumeric")
    return challenge


def require_signature(headers: Mapping[str, str]) -> str:
    """The signature header; without one the request is refused before its body is read."""
    header = headers.get(SIGNATURE)
    if not header:
        raise Rejected("missing_signature", "X-Hub-Signature-256 is required", 401)
    return header


def verify(secret: str, body: bytes, headers: Mapping[str, str]) -> None:
    header = require_signature(headers)
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(header.strip().encode(), expected.encode()):
        raise Rejected("bad_signature", "signature does not match", 401)


def parse(data: Mapping[str, Any], received_ms: int) -> list[Event]:
    """Every status in the notification; other changes (inbound messages) carry none."""
    return [_event(status, received_ms) for status in _statuses(data)]


def _statuses(data: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for entry in _objects(data.get("entry")):
        for change in _objects(entry.get("changes")):
            yield from _objects(fields.get(change, "value.statuses"))


def _objects(value: object) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise Rejected("invalid_payload", "entry, changes and statuses must be lists of objects")
    return value


def _event(status: Mapping[str, Any], received_ms: int) -> Event:
    wamid = fields.message_id(status.get("id"), "statuses.id")
    name = fields.status_name(status.get("status"), "statuses.status")
    code = STATUS_CODES.get(name, products.UNKNOWN_CODE)
    at = fields.unix_ms(status.get("timestamp"), received_ms)
    return Event(PROVIDER, PRODUCT, wamid, code, at, received_ms, _billable(status), name)


def _billable(status: Mapping[str, Any]) -> int:
    """Meta's pricing as the Event's flag: 1 billable, 0 not, -1 none (the table decides)."""
    pricing = status.get("pricing")
    if not isinstance(pricing, Mapping):
        return -1
    # Conversation-based pricing charged per conversation, not per message, and its webhooks
    # after 2025-07-01 are the free utility "Edge case" of the pricing page: never per message.
    if pricing.get("pricing_model") == "CBP":
        return 0
    # `billable` "will be deprecated": `type` decides where sent; an unknown type says nothing.
    kind = pricing.get("type")
    if isinstance(kind, str):
        if kind == BILLABLE_TYPE:
            return 1
        return 0 if kind.startswith(FREE_TYPE_PREFIX) else -1
    flag = pricing.get("billable")
    return int(flag) if isinstance(flag, bool) else -1
