"""Events for the application, as it receives them: the canonical JSON and its signature.

Sans I/O. The outbox stream (`core.keys.Keys.outbox`) holds each event as flat fields that
the Lua scripts write (`OutboxField`); this module turns them into the body that is signed
and delivered, and signs it as the Standard Webhooks specification says
(https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md):
headers `webhook-id`, `webhook-timestamp` (unix seconds) and `webhook-signature`
(`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`), keyed by the base64 part of a
`whsec_` secret. Receivers verify with the `standardwebhooks` library of their language.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import orjson
from standardwebhooks.webhooks import Webhook

from core.clock import iso
from core.model import NO_STATE, Status

EVENT_PREFIX = "message."
DELIVERY_TIMEOUT = "message.delivery_timeout"
# A state change is `message.<new state>`: a receiver (or FORWARD_EVENTS) picks what it wants,
# e.g. `message.failed,message.delivery_timeout` to start a fallback.
STATE_EVENTS = tuple(EVENT_PREFIX + s.value for s in Status)
EVENT_TYPES = (*STATE_EVENTS, DELIVERY_TIMEOUT)
SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
# The specification asks for secrets of 24 to 64 bytes.
MIN_SECRET_BYTES = 24


class OutboxField(StrEnum):
    """Fields of an outbox stream entry (stored: renaming one orphans entries in Redis)."""

    TYPE = "t"
    PROVIDER = "p"
    PRODUCT = "r"
    MESSAGE_ID = "i"
    PREVIOUS = "f"
    STATE = "s"
    BILLABLE = "b"
    # When it happened, ms: the provider's time of the callback, or the timer's deadline.
    AT = "a"
    SEQUENCE = "q"


TIMEOUT_TYPE_FIELD = "timeout"
"""The value of OutboxField.TYPE for a timeout (a state change stores `state`)."""
STATE_TYPE_FIELD = "state"


@dataclass(frozen=True)
class OutboxEvent:
    """One event of the outbox. Its id is `evt_<stream entry id>`: unique, assigned in the
    atomic step that recorded it, and the same on every attempt and replay."""

    id: str
    type: str
    provider: str
    product: str
    message_id: str
    previous_state: str | None
    state: str
    billable: bool
    at_ms: int
    sequence: int

    @classmethod
    def from_entry(cls, entry_id: str, fields: Mapping[str, str]) -> OutboxEvent:
        f = OutboxField
        state = fields[f.STATE]
        previous = fields[f.PREVIOUS]
        kind = fields[f.TYPE]
        return cls(
            id=f"evt_{entry_id}",
            type=DELIVERY_TIMEOUT if kind == TIMEOUT_TYPE_FIELD else EVENT_PREFIX + state,
            provider=fields[f.PROVIDER],
            product=fields[f.PRODUCT],
            message_id=fields[f.MESSAGE_ID],
            previous_state=None if previous == NO_STATE else previous,
            state=state,
            billable=fields[f.BILLABLE] == "1",
            at_ms=int(fields[f.AT]),
            sequence=int(fields[f.SEQUENCE]),
        )

    def body(self) -> bytes:
        """Canonical JSON: keys sorted, no spaces, UTF-8; the bytes that are signed."""
        return orjson.dumps(
            {
                "id": self.id,
                "type": self.type,
                "timestamp": iso(self.at_ms),
                "data": {
                    "provider": self.provider,
                    "product": self.product,
                    "message_id": self.message_id,
                    "previous_state": self.previous_state,
                    "state": self.state,
                    "billable": self.billable,
                    "sequence": self.sequence,
                },
            },
            option=orjson.OPT_SORT_KEYS,
        )


@dataclass(frozen=True)
class Filter:
    """Which events an endpoint gets; an empty tuple lets everything through."""

    providers: tuple[str, ...] = ()
    products: tuple[str, ...] = ()
    types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.types) - set(EVENT_TYPES))
        if unknown:
            raise ValueError(
                f"FORWARD_EVENTS: unknown event types {unknown} (known: {', '.join(EVENT_TYPES)})"
            )

    def allows(self, event: OutboxEvent) -> bool:
        return (
            _allowed(self.providers, event.provider)
            and _allowed(self.products, event.product)
            and _allowed(self.types, event.type)
        )


def _allowed(allowed: Iterable[str], value: str) -> bool:
    allowed = tuple(allowed)
    return not allowed or value in allowed


class Signer:
    """Signs bodies with one `whsec_` secret (the `standardwebhooks` library's HMAC)."""

    def __init__(self, secret: str) -> None:
        check_secret(secret)
        self._webhook = Webhook(secret)

    def headers(self, event_id: str, body: bytes, now: datetime | None = None) -> dict[str, str]:
        """The three Standard Webhooks headers; the timestamp is the attempt's, so a retry a
        day later still passes the receiver's 5-minute tolerance."""
        moment = now or datetime.now(UTC)
        signature = self._webhook.sign(event_id, moment, body.decode())
        return {
            "webhook-id": event_id,
            "webhook-timestamp": str(int(moment.timestamp())),
            "webhook-signature": signature,
            "content-type": "application/json",
        }


def check_secret(secret: str) -> None:
    """A `whsec_` prefix and 24 to 64 bytes of base64; the secret itself is never printed."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("FORWARD_SECRET must start with whsec_ (Standard Webhooks)")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except ValueError:
        raise ValueError("FORWARD_SECRET: the part after whsec_ must be base64") from None
    if not MIN_SECRET_BYTES <= len(key) <= 64:
        raise ValueError(
            f"FORWARD_SECRET must hold {MIN_SECRET_BYTES} to 64 random bytes (generate one with"
            ' `python3 -c \'import base64, secrets; print("whsec_" +'
            " base64.b64encode(secrets.token_bytes(32)).decode())'`)"
        )
