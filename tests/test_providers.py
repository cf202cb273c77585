"""The provider adapters, sans I/O: signatures, handshakes and parsing of recorded-style samples."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from nacl.signing import SigningKey
from twilio.request_validator import RequestValidator

from core import products
from core.model import Status
from receiver import body
from receiver.errors import Rejected
from receiver.providers import fields, meta, telnyx, twilio, verihubs

NOW = 1_795_000_000.0  # the "current" unix time of these tests (November 2026)
NOW_MS = int(NOW * 1000)
VERIFICATION = "12ade33a-21c0-473b-b055-b3c836e1c292"
EVENT_ID = "0ccc7b54-4df3-4bca-a65a-3da1ecc777f0"
WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"
WAMID_2 = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJCODc5QjBGQzJBMjE0QkQwNEUA"
SID = "SM" + "0123456789abcdef" * 2
TWILIO_TOKEN = "twilio-auth-token-for-tests"
TWILIO_URL = "https://otp.example.com/callbacks/twilio"


def status_of(event) -> Status | None:
    """The canonical status an event stands for, through its product's table."""
    product = products.product(event.provider, event.product)
    assert product is not None, (event.provider, event.product)
    return product.status(event.code)


def rejection(call, *args) -> Rejected:
    with pytest.raises(Rejected) as info:
        call(*args)
    return info.value


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


# Telnyx ------------------------------------------------------------------------------------

SIGNING_KEY = SigningKey(bytes(range(32)))
VERIFY_KEY = telnyx.public_key(base64.b64encode(bytes(SIGNING_KEY.verify_key)).decode())


def telnyx_event(event_type: str, kind: str = "sms", **payload: object) -> dict:
    return {
        "data": {
            "event_type": event_type,
            "id": EVENT_ID,
            "occurred_at": iso(NOW_MS - 2_000),
            "payload": {
                "id": VERIFICATION,
                "type": kind,
                "delivery_status": "delivered",
                "custom_code": "25565",
                "phone_number": "+13125000000",
                "status": "pending",
                "verify_profile_id": "12ade33a-21c0-473b-b055-b3c836e1c293",
                **payload,
            },
            "record_type": "event",
        },
        "meta": {"attempt": 1, "delivered_to": "https://otp.example.com/callbacks/telnyx"},
    }


def telnyx_headers(raw: bytes, timestamp: str, key: SigningKey = SIGNING_KEY) -> dict[str, str]:
    signature = key.sign(timestamp.encode() + b"|" + raw).signature
    return {
        telnyx.SIGNATURE: base64.b64encode(signature).decode(),
        telnyx.TIMESTAMP: timestamp,
    }


RAW_TELNYX = json.dumps(telnyx_event("verify.delivered")).encode()


def test_telnyx_accepts_a_valid_signature_within_the_tolerance():
    for skew in (0, -300, 300):
        timestamp = str(int(NOW) + skew)
        telnyx.verify(VERIFY_KEY, RAW_TELNYX, telnyx_headers(RAW_TELNYX, timestamp), NOW, 300)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        pytest.param({}, "missing_signature", id="no-headers"),
        pytest.param(
            {telnyx.TIMESTAMP: str(int(NOW))}, "missing_signature", id="no-signature-header"
        ),
        pytest.param(
            {telnyx.SIGNATURE: telnyx_headers(RAW_TELNYX, str(int(NOW)))[telnyx.SIGNATURE]},
            "missing_signature",
            id="no-timestamp-header",
        ),
        pytest.param(
            telnyx_headers(RAW_TELNYX, str(int(NOW) - 301)), "stale_timestamp", id="too-old"
        ),
        pytest.param(
            telnyx_headers(RAW_TELNYX, str(int(NOW) + 301)), "stale_timestamp", id="in-future"
        ),
        pytest.param(
            telnyx_headers(RAW_TELNYX, str(int(NOW)), SigningKey(bytes(32))),
            "bad_signature",
            id="other-key",
        ),
        pytest.param(
            telnyx_headers(RAW_TELNYX.replace(b"delivered", b"failed", 1), str(int(NOW))),
            "bad_signature",
            id="tampered-body",
        ),
        pytest.param(
            {**telnyx_headers(RAW_TELNYX, str(int(NOW))), telnyx.TIMESTAMP: str(int(NOW) - 1)},
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
        ("verify.completed", "expired"),  # completed, but the code was never accepted
        ("verification.complete", "invalid"),
        ("verify.reminder", "pending"),  # an event type we do not know
    ],
)
def test_telnyx_events_that_are_not_a_known_status_are_unknown(event_type, payload_status):
    event = telnyx.parse(telnyx_event(event_type, status=payload_status), NOW_MS)
    assert event.code == products.UNKNOWN_CODE
    assert status_of(event) is None


@pytest.mark.parametrize(
    ("kind", "product"),
    [("sms", "sms"), ("whatsapp", "whatsapp"), ("SMS", "sms"), ("fax", "other"), (None, "other")],
)
def test_telnyx_channel_comes_from_the_payload_type(kind, product):
    assert telnyx.parse(telnyx_event("verify.sent", kind), NOW_MS).product == product


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


# Meta --------------------------------------------------------------------------------------

APP_SECRET = "meta-app-secret-for-tests"
VERIFY_TOKEN = "meta-verify-token"
T0 = int(NOW) - 60


def meta_status(wamid: str, name: str, at: int, **extra: object) -> dict:
    return {
        "id": wamid,
        "status": name,
        "timestamp": str(at),
        "recipient_id": "16505551234",
        **extra,
    }


def meta_notification(*changes: list[dict]) -> dict:
    """One entry per list of statuses, as Meta groups them by business account."""
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": "106540352242922",
                            },
                            "statuses": statuses,
                        },
                    }
                ],
            }
            for statuses in changes
        ],
    }


PRICING = {"pricing_model": "PMP", "category": "authentication"}


def test_meta_handshake_echoes_the_challenge_for_our_token():
    params = {
        "hub.mode": "subscribe",
        "hub.verify_token": VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    assert meta.handshake(params, VERIFY_TOKEN) == "1158201444"


SUBSCRIBE = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN}


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
        ({"hub.verify_token": VERIFY_TOKEN, "hub.challenge": "123"}, "bad_verify_token", 403),
        (SUBSCRIBE, "invalid_challenge", 400),
        ({**SUBSCRIBE, "hub.challenge": "<b>x"}, "invalid_challenge", 400),
        ({**SUBSCRIBE, "hub.challenge": "12 34"}, "invalid_challenge", 400),
        ({**SUBSCRIBE, "hub.challenge": "9" * 129}, "invalid_challenge", 400),
    ],
)
def test_meta_handshake_refusals(params, reason, code):
    refused = rejection(meta.handshake, params, VERIFY_TOKEN)
    assert (refused.reason, refused.status_code) == (reason, code)


def meta_signature(raw: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


RAW_META = json.dumps(meta_notification([meta_status(WAMID, "sent", T0)])).encode()


def test_meta_accepts_its_hmac_signature():
    meta.verify(APP_SECRET, RAW_META, {meta.SIGNATURE: meta_signature(RAW_META)})


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing_signature"),
        ({meta.SIGNATURE: ""}, "missing_signature"),
        ({meta.SIGNATURE: meta_signature(RAW_META, "another-secret")}, "bad_signature"),
        ({meta.SIGNATURE: meta_signature(RAW_META + b" ")}, "bad_signature"),
        ({meta.SIGNATURE: meta_signature(RAW_META).removeprefix("sha256=")}, "bad_signature"),
        (
            {meta.SIGNATURE: "sha1=" + hmac.new(APP_SECRET.encode(), RAW_META, "sha1").hexdigest()},
            "bad_signature",
        ),
    ],
)
def test_meta_refuses_missing_or_wrong_signatures_with_401(headers, reason):
    refused = rejection(meta.verify, APP_SECRET, RAW_META, headers)
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


# Twilio ------------------------------------------------------------------------------------

VALIDATOR = RequestValidator(TWILIO_TOKEN)


def twilio_form(status: str, sender: str = "whatsapp:+14155238886", **extra: str) -> dict:
    return {
        "AccountSid": "AC" + "f" * 32,
        "ApiVersion": "2010-04-01",
        "From": sender,
        "To": sender.replace("14155238886", "15017122661"),
        "MessageSid": SID,
        "MessageStatus": status,
        "SmsSid": SID,
        "SmsStatus": status,
        **extra,
    }


def twilio_headers(url: str, form: dict) -> dict[str, str]:
    return {twilio.SIGNATURE: VALIDATOR.compute_signature(url, form)}


def test_twilio_accepts_a_signature_over_the_public_url_and_every_field():
    # A blank ErrorCode is signed too: the form parser must keep it for the check to pass.
    form = twilio_form("delivered", ErrorCode="")
    received = body.form_fields(urlencode(form).encode(), "application/x-www-form-urlencoded", 32)
    assert received["ErrorCode"] == ""
    twilio.verify(VALIDATOR, TWILIO_URL, received, twilio_headers(TWILIO_URL, form))
    without_blank = {k: v for k, v in received.items() if k != "ErrorCode"}
    refused = rejection(
        twilio.verify, VALIDATOR, TWILIO_URL, without_blank, twilio_headers(TWILIO_URL, form)
    )
    assert refused.reason == "bad_signature"


@pytest.mark.parametrize(
    ("headers", "form", "reason"),
    [
        ({}, twilio_form("sent"), "missing_signature"),
        (
            twilio_headers("http://internal:8000/callbacks/twilio", twilio_form("sent")),
            twilio_form("sent"),
            "bad_signature",
        ),
        (twilio_headers(TWILIO_URL, twilio_form("failed")), twilio_form("sent"), "bad_signature"),
        (
            {twilio.SIGNATURE: RequestValidator("other").compute_signature(TWILIO_URL, {})},
            {},
            "bad_signature",
        ),
    ],
)
def test_twilio_refuses_missing_or_wrong_signatures_with_401(headers, form, reason):
    refused = rejection(twilio.verify, VALIDATOR, TWILIO_URL, form, headers)
    assert (refused.reason, refused.status_code) == (reason, 401)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("accepted", Status.REQUESTED),
        ("queued", Status.REQUESTED),
        ("sending", Status.SENT),
        ("sent", Status.SENT),
        ("delivered", Status.DELIVERED),
        ("read", Status.READ),
        ("undelivered", Status.UNDELIVERED),
        ("failed", Status.FAILED),
        ("canceled", None),
    ],
)
def test_twilio_statuses(name, expected):
    event = twilio.parse(twilio_form(name), NOW_MS)
    assert (event.provider, event.message_id, event.at_ms) == ("twilio", SID, NOW_MS)
    assert status_of(event) is expected


@pytest.mark.parametrize(
    ("form", "product"),
    [
        ({"From": "whatsapp:+14155238886", "To": "whatsapp:+15017122661"}, "whatsapp"),
        ({"From": "+14155238886", "To": "+15017122661"}, "sms"),
        ({"From": "MG" + "a" * 32, "To": "+15017122661"}, "sms"),  # messaging service
        ({"To": "whatsapp:+15017122661"}, "whatsapp"),
        ({}, "sms"),
    ],
)
def test_twilio_product_from_the_address_scheme(form, product):
    event = twilio.parse({"MessageSid": SID, "MessageStatus": "sent", **form}, NOW_MS)
    assert event.product == product


@pytest.mark.parametrize(
    ("form", "reason"),
    [
        ({"MessageStatus": "sent"}, "missing_messagesid"),
        ({"MessageSid": "SM 1", "MessageStatus": "sent"}, "invalid_messagesid"),
        ({"MessageSid": SID}, "invalid_status"),
        ({"MessageSid": SID, "MessageStatus": "sent!"}, "invalid_status"),
    ],
)
def test_twilio_malformed_callbacks_are_400(form, reason):
    refused = rejection(twilio.parse, form, NOW_MS)
    assert (refused.reason, refused.status_code) == (reason, 400)


# Verihubs ----------------------------------------------------------------------------------


def test_verihubs_sms_otp_codes():
    expected = {
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
    for code, status in expected.items():
        event = verihubs.parse("sms-otp", {"session_id": "s-1", "status": str(code)}, NOW_MS)
        assert status_of(event) is status
    refused = rejection(verihubs.parse, "voice-otp", {"session_id": "s", "status": "1"}, NOW_MS)
    assert (refused.reason, refused.status_code) == ("unknown_product", 404)


# Shared fields -----------------------------------------------------------------------------


def nested(depth: int) -> bytes:
    """A JSON object nested exactly `depth` (>= 2) deep, objects and arrays alternating."""
    value: object = {}
    for level in range(depth - 2):
        value = {"a": value} if level % 2 else [value]
    return json.dumps({"a": value}).encode()


def test_json_object_depth_guard():
    assert fields.json_object(nested(32), 32)
    refused = rejection(fields.json_object, nested(33), 32)
    assert (refused.reason, refused.status_code) == ("json_too_deep", 400)
    assert fields.json_object(nested(3), 3) == {"a": [{}]}
    assert rejection(fields.json_object, nested(4), 3).reason == "json_too_deep"
    # Nesting past the parser's own limit is a 400 too, never a crash.
    assert rejection(fields.json_object, b"[" * 100_000 + b"]" * 100_000, 32).status_code == 400


def test_json_object_counts_only_the_deepest_branch():
    wide = {"a": [{"b": {}} for _ in range(1000)], "c": {"d": {"e": 1}}}
    assert fields.json_object(json.dumps(wide).encode(), 4) == wide
    assert rejection(fields.json_object, json.dumps(wide).encode(), 3).reason == "json_too_deep"


@pytest.mark.parametrize("raw", [b"{", b"", b"\xff", b"{'a': 1}", b"NaN"])
def test_json_object_refuses_invalid_json(raw):
    refused = rejection(fields.json_object, raw, 32)
    assert (refused.reason, refused.status_code) == ("invalid_json", 400)


@pytest.mark.parametrize("raw", [b"[]", b"1", b'"x"', b"null"])
def test_json_object_must_be_an_object(raw):
    refused = rejection(fields.json_object, raw, 32)
    assert (refused.reason, str(refused)) == ("invalid_json", "request body must be a JSON object")


def test_message_id_accepts_provider_ids_up_to_128_characters():
    for value in (VERIFICATION, WAMID, SID, "a" * 128, "a.b_c:d=e+f/g-h"):
        assert fields.message_id(value, "id") == value


@pytest.mark.parametrize(
    ("value", "name", "reason", "message"),
    [
        (None, "data.payload.id", "missing_payload_id", "data.payload.id is required"),
        ("", "MessageSid", "invalid_messagesid", "MessageSid is empty"),
        (12345, "statuses.id", "invalid_statuses_id", "must be a string"),
        ("a" * 129, "session_id", "invalid_session_id", "longer than 128 characters"),
        ("wamid.x\n", "statuses.id", "invalid_statuses_id", "characters outside"),
        ("id with space", "session_id", "invalid_session_id", "characters outside"),
        ("<script>", "session_id", "invalid_session_id", "characters outside"),
        ("caf\u00e9", "session_id", "invalid_session_id", "characters outside"),
    ],
)
def test_message_id_limits(value, name, reason, message):
    refused = rejection(fields.message_id, value, name)
    assert (refused.reason, refused.status_code) == (reason, 400)
    assert message in refused.message


def test_provider_times_are_believed_within_bounds_of_receipt():
    assert fields.plausible(NOW_MS - fields.MAX_AGE_MS, NOW_MS) == NOW_MS - fields.MAX_AGE_MS
    assert fields.plausible(NOW_MS + fields.MAX_AHEAD_MS, NOW_MS) == NOW_MS + fields.MAX_AHEAD_MS
    assert fields.plausible(NOW_MS - fields.MAX_AGE_MS - 1, NOW_MS) == NOW_MS
    assert fields.plausible(NOW_MS + fields.MAX_AHEAD_MS + 1, NOW_MS) == NOW_MS
    an_hour_ago = datetime.fromtimestamp(NOW, UTC) - timedelta(hours=1)
    assert fields.iso_ms(an_hour_ago.isoformat(), NOW_MS) == NOW_MS - 3_600_000
    assert fields.unix_ms(str(int(NOW) - 3600), NOW_MS) == NOW_MS - 3_600_000
    assert fields.unix_ms(int(NOW) - 3600, NOW_MS) == NOW_MS - 3_600_000
