"""The Twilio adapter, sans I/O: X-Twilio-Signature over the public URL and every form field,
message statuses (every one Twilio documents, in its callbacks' shapes per channel), the
channel from ChannelPrefix or else the address scheme, and malformed callbacks."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from core.model import Status
from receiver import body
from receiver.providers import twilio
from tests.samples import (
    NOW_MS,
    SID,
    TWILIO_AUTH_TOKEN,
    TWILIO_URL,
    twilio_callback,
    twilio_form,
    twilio_headers,
)
from tests.support import rejection, status_of

VALIDATOR = RequestValidator(TWILIO_AUTH_TOKEN)


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
            twilio_headers(TWILIO_URL, {}, token="other"),
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
        # Changed: the docs make `canceled` a terminal callback (it was unknown).
        ("canceled", Status.FAILED),
        ("scheduled", Status.REQUESTED),
        ("partially_delivered", Status.DELIVERED),
        ("receiving", None),  # inbound statuses: no outbound message's
        ("received", None),
    ],
)
def test_twilio_statuses(name, expected):
    event = twilio.parse(twilio_form(name), NOW_MS)
    assert (event.provider, event.message_id, event.at_ms) == ("twilio", SID, NOW_MS)
    assert status_of(event) is expected
    assert event.raw == name  # the history shows what Twilio sent


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
    ("name", "channel", "expected"),
    [
        ("queued", "sms", Status.REQUESTED),
        ("sent", "sms", Status.SENT),
        ("delivered", "sms", Status.DELIVERED),
        ("undelivered", "sms", Status.UNDELIVERED),
        ("failed", "sms", Status.FAILED),
        ("canceled", "sms", Status.FAILED),
        ("queued", "whatsapp", Status.REQUESTED),
        ("sent", "whatsapp", Status.SENT),
        ("delivered", "whatsapp", Status.DELIVERED),
        ("read", "whatsapp", Status.READ),
        ("undelivered", "whatsapp", Status.UNDELIVERED),
        ("failed", "whatsapp", Status.FAILED),
        ("sent", "rcs", Status.SENT),
        ("delivered", "rcs", Status.DELIVERED),
        ("read", "rcs", Status.READ),
        ("failed", "rcs", Status.FAILED),
    ],
)
def test_twilio_documented_callbacks_per_channel(name, channel, expected):
    event = twilio.parse(twilio_callback(name, channel), NOW_MS)
    assert (event.message_id, event.product, status_of(event)) == (SID, channel, expected)


@pytest.mark.parametrize(
    ("form", "product"),
    [
        ({"ChannelPrefix": "whatsapp", "From": "whatsapp:+14155238886"}, "whatsapp"),
        ({"ChannelPrefix": "rcs", "From": "+14155238886"}, "rcs"),
        ({"ChannelPrefix": "RCS", "To": "+15017122661"}, "rcs"),
        # The prefix names the channel; an address scheme is only the fallback.
        ({"ChannelPrefix": "rcs", "From": "whatsapp:+14155238886"}, "rcs"),
        ({"ChannelPrefix": "whatsapp", "From": "+14155238886"}, "whatsapp"),
        # A prefix we do not bill apart (or none) leaves it to the scheme.
        ({"ChannelPrefix": "messenger", "From": "whatsapp:+14155238886"}, "whatsapp"),
        ({"ChannelPrefix": "", "From": "+14155238886"}, "sms"),
    ],
)
def test_twilio_product_from_channel_prefix_first(form, product):
    event = twilio.parse({"MessageSid": SID, "MessageStatus": "read", **form}, NOW_MS)
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
