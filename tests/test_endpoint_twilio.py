"""POST /callbacks/twilio through the real app against the private Redis: signed status
callbacks for WhatsApp, RCS and SMS applied and billed, each channel its own way; a signature
over another URL or token, or none, is 401; without PUBLIC_URL the URL called is the one
checked."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx2 as httpx
import pytest
from starlette.testclient import TestClient

from tests.samples import (
    FORM,
    PUBLIC_URL,
    SMS_SENDER,
    TWILIO_AUTH_TOKEN,
    TWILIO_URL,
    WHATSAPP_SENDER,
    twilio_callback,
    twilio_form,
    twilio_headers,
    twilio_sid,
)
from tests.support import assert_refused, billing, message, run_jobs


def post_twilio(
    client: TestClient, form: dict[str, str], url: str = TWILIO_URL, token: str = TWILIO_AUTH_TOKEN
) -> httpx.Response:
    return client.post(
        "/callbacks/twilio",
        content=urlencode(form).encode(),
        headers={**FORM, **twilio_headers(url, form, token)},
    )


def test_twilio_status_callbacks(app_client, redis, settings):
    client = app_client(TWILIO_AUTH_TOKEN=TWILIO_AUTH_TOKEN, PUBLIC_URL=PUBLIC_URL)
    whatsapp, sms = WHATSAPP_SENDER, SMS_SENDER
    callbacks = [
        twilio_form("queued", whatsapp, sid=twilio_sid(1)),
        twilio_form("sent", whatsapp, sid=twilio_sid(1)),
        twilio_form("delivered", whatsapp, sid=twilio_sid(1)),
        twilio_form("read", whatsapp, sid=twilio_sid(1)),
        twilio_form("queued", sms, sid=twilio_sid(2)),
        twilio_form("sent", sms, sid=twilio_sid(2)),
        twilio_form("undelivered", sms, sid=twilio_sid(2), ErrorCode="30003"),
        twilio_form("queued", sms, sid=twilio_sid(3)),
        twilio_form("failed", sms, sid=twilio_sid(3), ErrorCode="30008"),
        # A blank ErrorCode is part of what Twilio signed: it must be kept to verify.
        twilio_form("delivered", whatsapp, sid=twilio_sid(4), ErrorCode=""),
    ]
    for form in callbacks:
        response = post_twilio(client, form)
        assert response.status_code == 200, response.text
    run_jobs(redis, settings)
    states = {
        n: (m["product"], m["state"], m["billable"])
        for n in (1, 2, 3, 4)
        for m in [message(client, "twilio", twilio_sid(n))]
    }
    assert states == {
        1: ("whatsapp", "read", True),
        2: ("sms", "undelivered", True),  # left for the carrier: charged
        3: ("sms", "failed", False),
        4: ("whatsapp", "delivered", True),
    }
    assert billing(client) == {("twilio", "whatsapp"): 2, ("twilio", "sms"): 1}


def test_twilio_bills_each_channel_its_own_way(app_client, redis, settings):
    client = app_client(TWILIO_AUTH_TOKEN=TWILIO_AUTH_TOKEN, PUBLIC_URL=PUBLIC_URL)
    callbacks = [
        twilio_callback("sent", "whatsapp", sid=twilio_sid(11)),
        twilio_callback("undelivered", "whatsapp", sid=twilio_sid(11)),
        twilio_callback("sent", "rcs", sid=twilio_sid(12)),
        twilio_callback("read", "rcs", sid=twilio_sid(12)),
        twilio_callback("canceled", "sms", sid=twilio_sid(13)),
    ]
    for form in callbacks:
        assert post_twilio(client, form).status_code == 200
    run_jobs(redis, settings)
    states = {
        n: (m["product"], m["state"], m["billable"])
        for n in (11, 12, 13)
        for m in [message(client, "twilio", twilio_sid(n))]
    }
    assert states == {
        11: ("whatsapp", "undelivered", False),  # "undelivered WhatsApp messages are not charged"
        12: ("rcs", "read", True),  # filed by ChannelPrefix, though its numbers are plain
        13: ("sms", "failed", False),  # a scheduled message canceled: never sent
    }
    assert billing(client) == {("twilio", "rcs"): 1}


@pytest.mark.parametrize(
    ("url", "token"),
    [
        ("http://testserver/callbacks/twilio", TWILIO_AUTH_TOKEN),  # the URL behind the proxy
        (PUBLIC_URL + "/callbacks/other", TWILIO_AUTH_TOKEN),
        (TWILIO_URL, "another-token"),
    ],
)
def test_twilio_signature_for_another_url_or_token_is_401(app_client, redis, url, token):
    client = app_client(TWILIO_AUTH_TOKEN=TWILIO_AUTH_TOKEN, PUBLIC_URL=PUBLIC_URL)
    response = post_twilio(client, twilio_form("sent", SMS_SENDER, sid=twilio_sid(5)), url, token)
    assert_refused(response, redis, client, 401, "bad_signature")


def test_twilio_unsigned_is_401(app_client, redis):
    client = app_client(TWILIO_AUTH_TOKEN=TWILIO_AUTH_TOKEN, PUBLIC_URL=PUBLIC_URL)
    form = twilio_form("sent", SMS_SENDER, sid=twilio_sid(6))
    response = client.post("/callbacks/twilio", content=urlencode(form).encode(), headers=FORM)
    assert_refused(response, redis, client, 401, "missing_signature")


def test_twilio_without_public_url_checks_the_url_called(app_client):
    client = app_client(TWILIO_AUTH_TOKEN=TWILIO_AUTH_TOKEN)
    form = twilio_form("sent", SMS_SENDER, sid=twilio_sid(7))
    assert post_twilio(client, form, "http://testserver/callbacks/twilio").status_code == 200
    assert post_twilio(client, form, TWILIO_URL).status_code == 401
