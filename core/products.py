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

# Verihubs sends `?session_id=...&status=N` to the callback URL (each page below, "Callback
# Description"); a code is charged where its condition says "This status will be charged.".
# SMS OTP: https://docs.verihubs.com/reference/send_otp_post-1 (POST v1/otp/send), "Status
# Description". Caution: that page says "This endpoint will be closed on August 31, 2025." and
# no SMS OTP V2 table was found: re-check this one against the version in use.
VERIHUBS_SMS_CODES: Mapping[int, Status] = {
    0: Status.REQUESTED,  # "SMS OTP has been requested." (not charged)
    1: Status.DELIVERED,  # charged
    2: Status.VERIFIED,  # charged
    3: Status.UNVERIFIED,  # "Not Verified": charged
    4: Status.FAILED,
    5: Status.REQUEST_ERROR,
    6: Status.REJECTED,
    7: Status.UNDELIVERED,  # charged
    8: Status.NO_DELIVERY_REPORT,  # charged ("RTODR" in the GET variant)
    9: Status.BLOCKED,
}

# Telnyx Verify channels (`data.payload.type`); any other type is tracked as "other".
# `sms`: https://developers.telnyx.com/docs/identity/verify/receiving-webhooks, "Delivery status
# Payload"; `dtmf_confirm`: https://developers.telnyx.com/docs/identity/verify/dtmf-confirm,
# "DTMF webhook payloads"; `call`, `flashcall`: Telnyx's SDK enum; `whatsapp`: Telnyx's samples;
# PSD2: a method the receiving-webhooks page names.
TELNYX_CHANNELS = ("sms", "whatsapp", "call", "flashcall", "psd2", "dtmf_confirm", "other")
# Twilio's `ChannelPrefix` (https://www.twilio.com/docs/messaging/api/message-resource, "Twilio's
# request to the StatusCallback URL"): RCS and WhatsApp, each billed its own way; else SMS.
TWILIO_CHANNELS = ("sms", "whatsapp", "rcs")


def _canonical(statuses: Iterable[Status]) -> dict[int, Status]:
    return {CODE_OF[s]: s for s in statuses}


def _codes(table: Mapping[int, Status], codes: Iterable[int]) -> frozenset[Status]:
    return frozenset(table[c] for c in codes)


def _verihubs() -> list[Product]:
    # The WhatsApp numbering is CANONICAL_CODES 0-11. Caution: the V1 WhatsApp pages
    # (send_whatsapp_otp_post-1, send_whatsapp_msg_post) charge 6 Failed too; these tables
    # are V2's, so an integration still on V1 would be under-counted.
    whatsapp = CANONICAL_CODES
    message_codes = [0, 1, 2, 3, 6, 7, 8, 9, 10, 11]
    return [
        # https://docs.verihubs.com/reference/send_whatsapp_otp_post_v2, "Callback Status
        # Description": codes 0-10, charged 0-5 (requested .. unverified).
        Product(
            "verihubs",
            "whatsapp-otp",
            {c: whatsapp[c] for c in range(11)},
            _codes(whatsapp, range(6)),
        ),
        # https://docs.verihubs.com/reference/send_whatsapp_msg_post_v2, "Callback Status
        # Description": codes 0-3 and 6-11, charged 0-3.
        Product(
            "verihubs",
            "whatsapp-message",
            {c: whatsapp[c] for c in message_codes},
            _codes(whatsapp, range(4)),
        ),
        # Charged 1, 2, 3, 7, 8: see VERIHUBS_SMS_CODES.
        Product(
            "verihubs", "sms-otp", VERIHUBS_SMS_CODES, _codes(VERIHUBS_SMS_CODES, [1, 2, 3, 7, 8])
        ),
    ]


def _telnyx() -> list[Product]:
    # Telnyx's own pricing page (https://telnyx.com/pricing/verify-api) was not found; a
    # third-party copy of it and Telnyx's sibling product's page bill a fee per successful
    # verification plus the channel cost of each send:
    # https://support.telnyx.com/en/articles/6988813-verified-numbers, "Pay as you go".
    # So a send that went out is charged (its channel cost), whatever its outcome; the fee is
    # the count of `verified` in otp_message_statuses_total. Whether a `delivery_failed` send
    # (undelivered) carries the channel cost is not documented: our assumption is that it
    # does not, nor does a send Telnyx failed to make (failed).
    codes = _canonical(
        [
            Status.SENT,
            Status.DELIVERED,
            Status.NO_DELIVERY_REPORT,
            Status.FAILED,
            Status.UNDELIVERED,
            Status.UNVERIFIED,
            Status.VERIFIED,
        ]
    )
    charged = frozenset(
        {
            Status.SENT,
            Status.DELIVERED,
            Status.NO_DELIVERY_REPORT,
            Status.UNVERIFIED,
            Status.VERIFIED,
        }
    )
    return [Product("telnyx", channel, codes, charged) for channel in TELNYX_CHANNELS]


def _meta() -> list[Product]:
    # "You are only charged when a template message is delivered"
    # (https://developers.facebook.com/documentation/business-messaging/whatsapp/pricing,
    # "Cloud API and Marketing Messages API for WhatsApp"): delivered and read (`played` is
    # read). Meta's pricing object, where sent, says whether a delivered message is charged.
    codes = _canonical([Status.SENT, Status.DELIVERED, Status.READ, Status.FAILED])
    return [Product("meta", "whatsapp", codes, frozenset({Status.DELIVERED, Status.READ}))]


# Twilio charges SMS "if delivery was attempted, i.e. the message status is "sent,"
# "delivered," "undelivered,"", never "failed"; read is harmless on SMS. But "undelivered
# WhatsApp messages are not charged". Sections "Delivery attempts", ""Failed" messages" and
# "A note about WhatsApp and other non-SMS channels" of
# https://support.twilio.com/hc/en-us/articles/223181728-Will-I-be-charged-if-Twilio-encounters-an-error-when-sending-an-SMS-
# RCS billing is not documented by Twilio: as a non-SMS channel, our assumption is WhatsApp's.
# Not counted: the $0.001 failed-message processing fee, a fixed fee per message with
# error-code exceptions, not the message price ("What messages are charged for message
# processing?" of
# https://support.twilio.com/hc/en-us/articles/27502337507483-Failed-Message-Processing-Fees).
TWILIO_CHARGED: Mapping[str, frozenset[Status]] = {
    "sms": frozenset({Status.SENT, Status.DELIVERED, Status.READ, Status.UNDELIVERED}),
    "whatsapp": frozenset({Status.SENT, Status.DELIVERED, Status.READ}),
    "rcs": frozenset({Status.SENT, Status.DELIVERED, Status.READ}),
}


def _twilio() -> list[Product]:
    statuses = [Status.REQUESTED, Status.SENT, Status.DELIVERED, Status.READ]
    codes = _canonical([*statuses, Status.FAILED, Status.UNDELIVERED])
    return [Product("twilio", ch, codes, TWILIO_CHARGED[ch]) for ch in TWILIO_CHANNELS]


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
