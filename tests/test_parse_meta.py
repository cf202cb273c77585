"""The Meta WhatsApp Cloud API adapter, sans I/O: the subscription handshake, the
X-Hub-Signature-256 check, how every status of every entry and change is parsed (each status
Meta documents, in its documented shape), and Meta's pricing object as the billing flag."""

from __future__ import annotations

import hmac
import json

import pytest

from core import products
from core.model import Status
from receiver.providers import meta
from tests.samples import (
    META_APP_SECRET,
    META_VERIFY_TOKEN,
    NOW,
    NOW_MS,
    PRICING,
    WAMIDS,
    meta_example,
    meta_notification,
    meta_pricing,
    meta_signature,
    meta_status,
)
from tests.support import rejection, status_of

WAMID, WAMID_2 = WAMIDS[:2]
T0 = int(NOW) - 60
SUBSCRIBE = {"hub.mode": "subscribe", "hub.verify_token": META_VERIFY_TOKEN}
RAW_META = json.dumps(meta_notification([meta_status(WAMID, "sent", T0)])).encode()


def test_meta_handshake_echoes_the_challenge_for_our_token():
    params = {
        "hub.mode": "subscribe",
        "hub.verify_token": META_VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    assert meta.handshake(params, META_VERIFY_TOKEN) == "1158201444"


@pytest.mark.parametrize(
    ("params", "reason", "code"),
    [
        (
            {**SUBSCRIBE, "hub.verify_token": "guess", "hub.challenge": "123"},
            "bad_verify_token",
            403,
        ),
        ({"hub.mode": "subscribe", "hub.challenge": "123"}, "bad_verify_token", 403),
        ({**SUBSCRIBE, "hub.mode": "unsubscribe", "hub.challenge": "123"}, "bad_verify_token", 403),
        ({"hub.verify_token": META_VERIFY_TOKEN, "hub.challenge": "123"}, "bad_verify_token", 403),
        (SUBSCRIBE, "invalid_challenge", 400),
        ({**SUBSCRIBE, "hub.challenge": "<b>x"}, "invalid_challenge", 400),
        ({**SUBSCRIBE, "hub.challenge": "12 34"}, "invalid_challenge", 400),
        ({**SUBSCRIBE, "hub.challenge": "9" * 129}, "invalid_challenge", 400),
    ],
)
def test_meta_handshake_refusals(params, reason, code):
    refused = rejection(meta.handshake, params, META_VERIFY_TOKEN)
    assert (refused.reason, refused.status_code) == (reason, code)


def test_meta_accepts_its_hmac_signature():
    meta.verify(META_APP_SECRET, RAW_META, {meta.SIGNATURE: meta_signature(RAW_META)})


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing_signature"),
        ({meta.SIGNATURE: ""}, "missing_signature"),
        ({meta.SIGNATURE: meta_signature(RAW_META, "another-secret")}, "bad_signature"),
        ({meta.SIGNATURE: meta_signature(RAW_META + b" ")}, "bad_signature"),
        ({meta.SIGNATURE: meta_signature(RAW_META).removeprefix("sha256=")}, "bad_signature"),
        (
            {
                meta.SIGNATURE: "sha1="
                + hmac.new(META_APP_SECRET.encode(), RAW_META, "sha1").hexdigest()
            },
            "bad_signature",
        ),
    ],
)
def test_meta_refuses_missing_or_wrong_signatures_with_401(headers, reason):
    refused = rejection(meta.verify, META_APP_SECRET, RAW_META, headers)
    assert (refused.reason, refused.status_code) == (reason, 401)


def test_meta_parses_every_status_of_every_entry_and_change():
    data = meta_notification(
        [
            meta_status(WAMID, "sent", T0, pricing={**PRICING, "billable": True}),
            meta_status(WAMID, "delivered", T0 + 2, pricing={**PRICING, "billable": False}),
        ],
        [
            meta_status(WAMID_2, "read", T0 + 5),
            meta_status(
                WAMID_2,
                "failed",
                T0 + 6,
                errors=[{"code": 131026, "title": "Message undeliverable"}],
            ),
        ],
    )
    events = meta.parse(data, NOW_MS)
    assert [(e.message_id, status_of(e), e.at_ms, e.billable) for e in events] == [
        (WAMID, Status.SENT, T0 * 1000, 1),
        (WAMID, Status.DELIVERED, (T0 + 2) * 1000, 0),
        (WAMID_2, Status.READ, (T0 + 5) * 1000, -1),
        (WAMID_2, Status.FAILED, (T0 + 6) * 1000, -1),
    ]
    assert {(e.provider, e.product, e.received_ms) for e in events} == {
        ("meta", "whatsapp", NOW_MS)
    }


@pytest.mark.parametrize(
    ("name", "expected", "billable"),
    [
        ("sent", Status.SENT, 1),  # PMP, type regular
        ("delivered", Status.DELIVERED, 1),
        ("read", Status.READ, 0),  # recorded CBP-era: conversation pricing, never per message
        ("played", Status.READ, -1),  # a voice message played: no pricing comes with it
        ("failed", Status.FAILED, -1),
    ],
)
def test_meta_documented_statuses(name, expected, billable):
    (event,) = meta.parse(meta_notification([meta_example(name, T0)]), NOW_MS)
    assert (event.message_id, event.at_ms) == (WAMID, T0 * 1000)
    assert (status_of(event), event.billable) == (expected, billable)
    assert event.raw == name  # the history shows what Meta sent


@pytest.mark.parametrize(
    ("pricing", "billable"),
    [
        (meta_pricing("regular"), 1),
        (meta_pricing("free_customer_service", False, category="service"), 0),
        (meta_pricing("free_entry_point", False), 0),
        (meta_pricing("free_group_customer_service", False, category="group_service"), 0),
        (meta_pricing("free_of_some_new_kind", None), 0),  # every free_* type is free
        # `billable` "will be deprecated": the type decides where both are sent.
        (meta_pricing("regular", False), 1),
        (meta_pricing("free_customer_service", True), 0),
        # No type: the boolean, as before.
        (meta_pricing(None, True, category="authentication"), 1),
        (meta_pricing(None, False, category="authentication"), 0),
        (meta_pricing(None, None), -1),
        # A type we do not know says nothing: the product's table decides.
        (meta_pricing("premium", True), -1),
        # Conversation-based pricing is charged per conversation: no message is flagged.
        (meta_pricing(None, True, model="CBP", category="service"), 0),
        (meta_pricing("regular", True, model="CBP", category="utility"), 0),
        ("regular", -1),  # not an object
    ],
)
def test_meta_pricing_type_first_then_billable(pricing, billable):
    data = meta_notification([meta_status(WAMID, "delivered", T0, pricing=pricing)])
    assert [e.billable for e in meta.parse(data, NOW_MS)] == [billable]


def test_meta_inbound_messages_carry_no_status():
    data = meta_notification([])
    value = data["entry"][0]["changes"][0]["value"]
    del value["statuses"]
    value["contacts"] = [{"profile": {"name": "Kerry"}, "wa_id": "16505551234"}]
    value["messages"] = [{"from": "16505551234", "id": WAMID, "text": {"body": "hi"}}]
    assert meta.parse(data, NOW_MS) == []
    assert meta.parse({"object": "whatsapp_business_account"}, NOW_MS) == []


def test_meta_unknown_status_and_implausible_times():
    data = meta_notification(
        [
            meta_status(WAMID, "deleted", T0),
            meta_status(WAMID, "sent", 1_000),  # 1970: not believed
            meta_status(WAMID, "delivered", 999_999_999_999),  # year 33658: not believed
            meta_status(WAMID, "read", T0, timestamp="\u00b2"),  # not an ASCII number
            meta_status(WAMID, "read", T0, timestamp=True),
        ]
    )
    events = meta.parse(data, NOW_MS)
    assert events[0].code == products.UNKNOWN_CODE
    assert events[0].at_ms == T0 * 1000
    assert [e.at_ms for e in events[1:]] == [NOW_MS] * 4


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"entry": {"changes": []}}, "invalid_payload"),
        ({"entry": [{"changes": [{"value": {"statuses": ["sent"]}}]}]}, "invalid_payload"),
        (meta_notification([{"status": "sent", "timestamp": str(T0)}]), "missing_statuses_id"),
        (meta_notification([meta_status("wamid.<script>", "sent", T0)]), "invalid_statuses_id"),
        (meta_notification([meta_status(WAMID, "", T0)]), "invalid_status"),
    ],
)
def test_meta_malformed_notifications_are_400(data, reason):
    refused = rejection(meta.parse, data, NOW_MS)
    assert (refused.reason, refused.status_code) == (reason, 400)
