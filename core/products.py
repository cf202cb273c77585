"""Billing and status-code tables, per provider and product: data, not code.

Verihubs sends integer codes, numbered per product. Providers that send status names
(Telnyx, Meta, Twilio) are mapped by their adapters onto the canonical codes below (the
Verihubs WhatsApp numbering, extended), so every product is a table of integer codes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache

from core.model import Product, Status

# Stored in message hashes (unknown codes) and job payloads: append-only.
CANONICAL_CODES: Mapping[int, Status] = {
    0: Status.REQUESTED,
    1: Status.SENT,
    2: Status.DELIVERED,
    3: Status.READ,
    4: Status.VERIFIED,
    5: Status.UNVERIFIED,
    6: Status.FAILED,
    7: Status.REQUEST_ERROR,
    8: Status.REJECTED,
    9: Status.BLOCKED,
    10: Status.TIER_LIMIT_EXCEEDED,
    11: Status.INVALID_DATA,
    12: Status.UNDELIVERED,
    13: Status.NO_DELIVERY_REPORT,
}
CODE_OF: Mapping[Status, int] = {s: c for c, s in CANONICAL_CODES.items()}
# An event a provider sends under a name no table knows: accepted, counted as unknown.
UNKNOWN_CODE = -1

VERIHUBS_SMS_CODES: Mapping[int, Status] = {
    0: Status.REQUESTED,
    1: Status.DELIVERED,
    2: Status.VERIFIED,
    3: Status.UNVERIFIED,
    4: Status.FAILED,
    5: Status.REQUEST_ERROR,
    6: Status.REJECTED,
    7: Status.UNDELIVERED,
    8: Status.NO_DELIVERY_REPORT,
    9: Status.BLOCKED,
}

# Telnyx Verify channels (`data.payload.type`); any other type is tracked as "other".
TELNYX_CHANNELS = ("sms", "whatsapp", "call", "flashcall", "psd2", "other")
TWILIO_CHANNELS = ("sms", "whatsapp")


def _canonical(statuses: Iterable[Status]) -> dict[int, Status]:
    return {CODE_OF[s]: s for s in statuses}


def _codes(table: Mapping[int, Status], codes: Iterable[int]) -> frozenset[Status]:
    return frozenset(table[c] for c in codes)


def _verihubs() -> list[Product]:
    whatsapp = CANONICAL_CODES
    message_codes = [0, 1, 2, 3, 6, 7, 8, 9, 10, 11]
    return [
        Product(
            "verihubs",
            "whatsapp-otp",
            {c: whatsapp[c] for c in range(11)},
            _codes(whatsapp, range(6)),
        ),
        Product(
            "verihubs",
            "whatsapp-message",
            {c: whatsapp[c] for c in message_codes},
            _codes(whatsapp, range(4)),
        ),
        Product(
            "verihubs", "sms-otp", VERIHUBS_SMS_CODES, _codes(VERIHUBS_SMS_CODES, [1, 2, 3, 7, 8])
        ),
    ]


def _telnyx() -> list[Product]:
    # Telnyx bills verifications that went out. As everywhere, the current state decides:
    # `verify.failed` (after `verify.sent` or not) ends not billable.
    codes = _canonical([Status.SENT, Status.DELIVERED, Status.FAILED, Status.VERIFIED])
    charged = frozenset({Status.SENT, Status.DELIVERED, Status.VERIFIED})
    return [Product("telnyx", channel, codes, charged) for channel in TELNYX_CHANNELS]


def _meta() -> list[Product]:
    # Per-message pricing charges delivered messages; `pricing.billable` overrides this.
    codes = _canonical([Status.SENT, Status.DELIVERED, Status.READ, Status.FAILED])
    return [Product("meta", "whatsapp", codes, frozenset({Status.DELIVERED, Status.READ}))]


def _twilio() -> list[Product]:
    statuses = [Status.REQUESTED, Status.SENT, Status.DELIVERED, Status.READ]
    codes = _canonical([*statuses, Status.FAILED, Status.UNDELIVERED])
    # Twilio charges a message once it left for the carrier, delivered or not.
    charged = frozenset({Status.SENT, Status.DELIVERED, Status.READ, Status.UNDELIVERED})
    return [Product("twilio", channel, codes, charged) for channel in TWILIO_CHANNELS]


PRODUCTS: Mapping[tuple[str, str], Product] = {
    (p.provider, p.name): p for p in [*_verihubs(), *_telnyx(), *_meta(), *_twilio()]
}


def product(provider: str, name: str) -> Product | None:
    return PRODUCTS.get((provider, name))


@cache
def status_bit(provider: str, name: str, code: int) -> int:
    """The status's bit for the Lua script; -1 for a code the product does not know."""
    prod = product(provider, name)
    status = prod.status(code) if prod else None
    return -1 if status is None else status.bit
