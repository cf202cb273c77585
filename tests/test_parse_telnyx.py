"""The Telnyx Verify adapter, sans I/O: its Ed25519 signature and timestamp check, the public
key setting, and how webhook events map to a message, a channel, a status and a time: every
delivery status and completion outcome Telnyx documents, in its documented payloads' shape."""

from __future__ import annotations

import base64
import json

import pytest
from nacl.signing import SigningKey

from core import products
from core.model import Status
from receiver.providers import telnyx
from tests.samples import (
    NOW,
    NOW_MS,
    SIGNING_KEY,
    TELNYX_PUBLIC_KEY,
    VERIFICATION,
    telnyx_completion,
    telnyx_event,
    telnyx_headers,
)
from tests.support import rejection, status_of

VERIFY_KEY = telnyx.public_key(TELNYX_PUBLIC_KEY)
RAW_TELNYX = json.dumps(telnyx_event("verify.delivered")).encode()


def test_telnyx_accepts_a_valid_signature_within_the_tolerance():
    for skew in (0, -300, 300):
        timestamp = str(int(NOW) + skew)
        telnyx.verify(
            VERIFY_KEY, RAW_TELNYX, telnyx_headers(RAW_TELNYX, timestamp=timestamp), NOW, 300
        )


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        pytest.param({}, "missing_signature", id="no-headers"),
        pytest.param(
            {telnyx.TIMESTAMP: str(int(NOW))}, "missing_signature", id="no-signature-header"
        ),
        pytest.param(
            {
                telnyx.SIGNATURE: telnyx_headers(RAW_TELNYX, timestamp=str(int(NOW)))[
                    telnyx.SIGNATURE
                ]
            },
            "missing_signature",
            id="no-timestamp-header",
        ),
        pytest.param(
            telnyx_headers(RAW_TELNYX, timestamp=str(int(NOW) - 301)),
            "stale_timestamp",
            id="too-old",
        ),
        pytest.param(
            telnyx_headers(RAW_TELNYX, timestamp=str(int(NOW) + 301)),
            "stale_timestamp",
            id="in-future",
        ),
        pytest.param(
            telnyx_headers(RAW_TELNYX, timestamp=str(int(NOW)), key=SigningKey(bytes(32))),
            "bad_signature",
            id="other-key",
        ),
        pytest.param(
            telnyx_headers(RAW_TELNYX.replace(b"delivered", b"failed", 1), timestamp=str(int(NOW))),
            "bad_signature",
            id="tampered-body",
        ),
        pytest.param(
            {
                **telnyx_headers(RAW_TELNYX, timestamp=str(int(NOW))),
                telnyx.TIMESTAMP: str(int(NOW) - 1),
            },
            "bad_signature",
            id="signed-for-another-timestamp",
        ),
        pytest.param(
            {telnyx.SIGNATURE: "not base64!", telnyx.TIMESTAMP: str(int(NOW))},
            "bad_signature",
            id="signature-not-base64",
        ),
        pytest.param(
            {telnyx.SIGNATURE: "c2ln", telnyx.TIMESTAMP: "yesterday"},
            "bad_signature",
            id="timestamp-not-a-number",
        ),
        # Unicode digits pass str.isdigit() but not int(): refused, never a server error.
        pytest.param(
            {telnyx.SIGNATURE: "c2ln", telnyx.TIMESTAMP: "\u00b2"},
            "bad_signature",
            id="superscript-digit-timestamp",
        ),
        pytest.param(
            {telnyx.SIGNATURE: "c2ln", telnyx.TIMESTAMP: "1" * 13},
            "bad_signature",
            id="timestamp-too-long",
        ),
    ],
)
def test_telnyx_refuses_unauthenticated_requests_with_401(headers, reason):
    refused = rejection(telnyx.verify, VERIFY_KEY, RAW_TELNYX, headers, NOW, 300)
    assert (refused.reason, refused.status_code) == (reason, 401)


def test_telnyx_public_key_must_be_a_base64_ed25519_key():
    assert bytes(VERIFY_KEY) == bytes(SIGNING_KEY.verify_key)
    for bad in ("not-base64!", base64.b64encode(b"too short").decode()):
        with pytest.raises(ValueError, match="TELNYX_PUBLIC_KEY"):
            telnyx.public_key(bad)


@pytest.mark.parametrize(
    ("event_type", "payload_status", "expected"),
    [
        ("verify.sent", "pending", Status.SENT),
        ("verify.delivered", "pending", Status.DELIVERED),
        ("verify.failed", "pending", Status.FAILED),
        ("verification.complete", "accepted", Status.VERIFIED),
        ("verify.completed", "accepted", Status.VERIFIED),
    ],
)
def test_telnyx_event_types_map_to_statuses(event_type, payload_status, expected):
    event = telnyx.parse(telnyx_event(event_type, status=payload_status), NOW_MS)
    assert (event.provider, event.product, event.message_id) == ("telnyx", "sms", VERIFICATION)
    assert status_of(event) is expected


@pytest.mark.parametrize(
    ("event_type", "payload_status"),
    [
        # Changed: `expired` and `invalid` completions were unknown; the DTMF outcome table
        # makes them unverified (test_telnyx_completion_outcomes). A status no outcome is:
        ("verify.completed", "pending"),
        ("verification.complete", "rejected"),
        ("verify.reminder", "pending"),  # an event type we do not know
    ],
)
def test_telnyx_events_that_are_not_a_known_status_are_unknown(event_type, payload_status):
    event = telnyx.parse(telnyx_event(event_type, status=payload_status), NOW_MS)
    assert event.code == products.UNKNOWN_CODE
    assert status_of(event) is None


@pytest.mark.parametrize(
    ("kind", "product"),
    [
        ("sms", "sms"),
        ("whatsapp", "whatsapp"),
        ("call", "call"),
        ("flashcall", "flashcall"),
        ("dtmf_confirm", "dtmf_confirm"),
        ("SMS", "sms"),
        ("fax", "other"),
        (None, "other"),
    ],
)
def test_telnyx_channel_comes_from_the_payload_type(kind, product):
    assert telnyx.parse(telnyx_event("verify.sent", type=kind), NOW_MS).product == product


@pytest.mark.parametrize(
    ("event_type", "delivery_status", "expected"),
    [
        ("verify.sent", "sent", Status.SENT),
        ("verify.delivered", "delivered", Status.DELIVERED),
        ("verify.failed", "sending_failed", Status.FAILED),
        ("verify.failed", "delivery_failed", Status.UNDELIVERED),
        # Telnyx does not say which event carries it: any delivery event does.
        ("verify.sent", "delivery_unconfirmed", Status.NO_DELIVERY_REPORT),
        ("verify.delivered", "delivery_unconfirmed", Status.NO_DELIVERY_REPORT),
        ("verify.failed", "delivery_unconfirmed", Status.NO_DELIVERY_REPORT),
        ("verify.reminder", "delivery_unconfirmed", Status.NO_DELIVERY_REPORT),
    ],
)
def test_telnyx_delivery_statuses(event_type, delivery_status, expected):
    event = telnyx.parse(telnyx_event(event_type, delivery_status=delivery_status), NOW_MS)
    assert (event.message_id, event.product, status_of(event)) == (VERIFICATION, "sms", expected)


@pytest.mark.parametrize("delivery_status", [None, "pending", ["delivery_failed"], {"a": 1}])
def test_telnyx_failed_without_a_known_delivery_status_is_failed(delivery_status):
    sample = telnyx_event("verify.failed", delivery_status=delivery_status)
    assert status_of(telnyx.parse(sample, NOW_MS)) is Status.FAILED
    del sample["data"]["payload"]["delivery_status"]
    assert status_of(telnyx.parse(sample, NOW_MS)) is Status.FAILED


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        ("accepted", Status.VERIFIED),  # "Confirmed": digit 1 pressed
        ("invalid", Status.UNVERIFIED),  # "Rejected": wrong digit
        ("expired", Status.UNVERIFIED),  # "Timed out": no keypress
        ("error", Status.UNDELIVERED),  # "Failed": call not answered
    ],
)
def test_telnyx_completion_outcomes(outcome, expected):
    sample = telnyx_completion(outcome)
    event = telnyx.parse(sample, NOW_MS)
    # The documented completion has no occurred_at: receipt time.
    assert (event.message_id, event.product, event.at_ms) == (VERIFICATION, "dtmf_confirm", NOW_MS)
    assert status_of(event) is expected
    sample["data"]["event_type"] = "verify.completed"  # the undocumented alias
    assert status_of(telnyx.parse(sample, NOW_MS)) is expected
    # An outcome's status says more than a delivery status the completion may carry.
    sample["data"]["payload"]["delivery_status"] = "delivery_unconfirmed"
    assert status_of(telnyx.parse(sample, NOW_MS)) is expected


@pytest.mark.parametrize("outcome", [None, ["accepted"], {"status": "accepted"}, 1])
def test_telnyx_completion_without_a_string_status_is_unknown(outcome):
    sample = telnyx_completion("accepted")
    sample["data"]["payload"]["status"] = outcome
    assert telnyx.parse(sample, NOW_MS).code == products.UNKNOWN_CODE


def test_telnyx_occurred_at_is_the_status_time_when_plausible():
    sample = telnyx_event("verify.delivered")
    event = telnyx.parse(sample, NOW_MS)
    assert (event.at_ms, event.received_ms) == (NOW_MS - 2_000, NOW_MS)
    for occurred_at in ("2020-01-01T00:00:00+00:00", "2026-11-01T00:00:00", "soon", None):
        sample["data"]["occurred_at"] = occurred_at  # too old, no zone, unreadable, absent
        assert telnyx.parse(sample, NOW_MS).at_ms == NOW_MS


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d["data"]["payload"].pop("id"), "missing_payload_id"),
        (lambda d: d["data"]["payload"].update(id="a b"), "invalid_payload_id"),
        (lambda d: d["data"].pop("payload"), "missing_payload_id"),
        (lambda d: d["data"].pop("event_type"), "invalid_status"),
        (lambda d: d["data"].update(event_type="verify delivered"), "invalid_status"),
    ],
)
def test_telnyx_malformed_events_are_400(mutate, reason):
    sample = telnyx_event("verify.sent")
    mutate(sample)
    refused = rejection(telnyx.parse, sample, NOW_MS)
    assert (refused.reason, refused.status_code) == (reason, 400)


@pytest.mark.parametrize(
    ("sample", "as_sent"),
    [
        (telnyx_event("verify.sent"), "verify.sent:sent"),
        (
            telnyx_event("verify.failed", delivery_status="delivery_failed"),
            "verify.failed:delivery_failed",
        ),
        (telnyx_event("verify.failed", delivery_status=["delivery_failed"]), "verify.failed"),
        (telnyx_event("verify.delivered", delivery_status="<b>x</b>"), "verify.delivered"),
        (telnyx_completion("invalid"), "verification.complete:invalid"),
        (telnyx_event("verify.brand_new"), "verify.brand_new:delivered"),
    ],
)
def test_telnyx_events_keep_their_status_as_sent_for_the_history(sample, as_sent):
    """What decided the code, as Telnyx named it; a value that is no plain name is left out."""
    assert telnyx.parse(sample, NOW_MS).raw == as_sent
