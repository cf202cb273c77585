"""The events' canonical form, their signature, the endpoint checks and the retry schedule
(sans I/O: core.webhooks, core.forwarding)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from core.forwarding import (
    MAX_RETRY_DELAY,
    check_url,
    is_public,
    retry_delay,
)
from core.settings import Settings
from core.webhooks import EVENT_TYPES, Filter, OutboxEvent, OutboxField, Signer
from tests.subscriber import SECRET

F = OutboxField


def _entry(**over: str) -> dict[str, str]:
    fields = {
        F.TYPE: "state",
        F.PROVIDER: "telnyx",
        F.PRODUCT: "sms",
        F.MESSAGE_ID: "v-1",
        F.PREVIOUS: "sent",
        F.STATE: "failed",
        F.BILLABLE: "0",
        F.AT: "1733000000123",
        F.SEQUENCE: "3",
    }
    return {str(k): v for k, v in {**fields, **over}.items()}


def test_the_signature_is_the_specifications():
    """The example of the Standard Webhooks specification (its README, "Signature scheme"):
    our signer gives its signature for its id, timestamp and body."""
    moment = datetime.fromtimestamp(1614265330, UTC)
    headers = Signer(SECRET).headers(
        "msg_p5jXN8AQM9LWM0D4loKWxJek", b'{"test": 2432232314}', moment
    )
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert headers["webhook-timestamp"] == "1614265330"


def test_a_receiver_verifies_an_event_with_the_library_and_refuses_a_forgery():
    event = OutboxEvent.from_entry("1733000000123-0", _entry())
    body = event.body()
    headers = Signer(SECRET).headers(event.id, body)
    receiver = Webhook(SECRET)
    assert receiver.verify(body, headers)["data"]["state"] == "failed"
    with pytest.raises(WebhookVerificationError):
        receiver.verify(body.replace(b"failed", b"delivered"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 32).verify(body, headers)


def test_the_body_is_canonical_json():
    event = OutboxEvent.from_entry("1733000000123-0", _entry())
    assert event.body() == (
        b'{"data":{"billable":false,"message_id":"v-1","previous_state":"sent",'
        b'"product":"sms","provider":"telnyx","sequence":3,"state":"failed"},'
        b'"id":"evt_1733000000123-0","timestamp":"2024-11-30T20:53:20.123+00:00",'
        b'"type":"message.failed"}'
    )


def test_a_first_state_has_no_previous_and_a_timeout_keeps_its_state():
    first = OutboxEvent.from_entry("1-0", _entry(**{F.PREVIOUS: "none", F.STATE: "sent"}))
    assert (first.type, first.previous_state) == ("message.sent", None)
    late = OutboxEvent.from_entry("2-0", _entry(**{F.TYPE: "timeout", F.STATE: "sent"}))
    assert (late.type, late.state) == ("message.delivery_timeout", "sent")


def test_filters():
    event = OutboxEvent.from_entry("1-0", _entry())
    assert Filter().allows(event)
    assert Filter(types=("message.failed",), providers=("telnyx",)).allows(event)
    assert not Filter(products=("whatsapp",)).allows(event)
    assert not Filter(types=("message.delivery_timeout",)).allows(event)
    with pytest.raises(ValueError, match="unknown event types"):
        Filter(types=("message.lost",))
    assert "message.delivered" in EVENT_TYPES


@pytest.mark.parametrize(
    ("url", "insecure", "ok"),
    [
        ("https://hooks.example.com/otp", False, True),
        ("https://8.8.8.8/otp", False, True),
        ("http://hooks.example.com/otp", False, False),
        ("https://10.1.2.3/otp", False, False),
        ("https://192.168.0.1/otp", False, False),
        ("https://100.64.0.1/otp", False, False),  # carrier-grade NAT
        ("https://[::ffff:127.0.0.1]/otp", False, False),
        ("https://[fd00::1]/otp", False, False),
        ("https://0.0.0.0/otp", False, False),
        ("https://user:pw@hooks.example.com/otp", False, False),
        ("ftp://hooks.example.com/otp", True, False),
        ("https:///otp", True, False),
        ("http://127.0.0.1:9000/otp", True, True),
    ],
)
def test_endpoint_urls(url, insecure, ok):
    if ok:
        check_url(url, insecure)
    else:
        with pytest.raises(ValueError):
            check_url(url, insecure)


def test_public_addresses():
    assert is_public("93.184.216.34") and is_public("2606:2800:220:1::1")
    for address in ("127.0.0.1", "::1", "169.254.169.254", "172.16.0.1", "224.0.0.1", "fe80::1"):
        assert not is_public(address)


def test_retries_start_within_seconds_and_last_over_a_day():
    settings = Settings.from_env({"REDIS_URL": "redis://x"}).forward
    rnd = random.Random(1)
    assert retry_delay(1, settings.first_retry, rnd) < 5
    elapsed, attempts = 0.0, 0
    while elapsed < settings.retry_window:
        attempts += 1
        elapsed += retry_delay(attempts, settings.first_retry, rnd)
    assert settings.retry_window >= 86400
    assert attempts < 60  # bounded work per dead event
    assert max(retry_delay(n, 2.0, rnd) for n in range(1, 80)) <= MAX_RETRY_DELAY * 1.1


def _forward(**env: str):
    return Settings.from_env({"REDIS_URL": "redis://x", **env}).forward


def test_forward_settings():
    fs = _forward(
        FORWARD_URL="https://a.example.com/x, https://b.example.com/y",
        FORWARD_SECRET=SECRET,
        DELIVERY_TIMEOUT="60",
        DELIVERY_TIMEOUT_TELNYX="120",
        DELIVERY_TIMEOUT_VERIHUBS_SMS_OTP="0",
    )
    assert [e.label for e in fs.endpoints] == ["0", "1"]
    assert fs.endpoints[0].group != fs.endpoints[1].group
    assert SECRET not in repr(fs)
    assert fs.delivery_timeout_ms("verihubs", "whatsapp-otp") == 60_000
    assert fs.delivery_timeout_ms("telnyx", "sms") == 120_000
    assert fs.delivery_timeout_ms("verihubs", "sms-otp") == 0
    assert _forward().delivery_timeout_ms("meta", "whatsapp") == 0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FORWARD_URL": "https://a.example.com"}, "needs FORWARD_SECRET"),
        ({"FORWARD_SECRET": "c2VjcmV0"}, "whsec_"),
        ({"FORWARD_SECRET": "whsec_c2VjcmV0"}, "24 to 64"),
        ({"FORWARD_SECRET": "whsec_!!!"}, "base64"),
        (
            {
                "FORWARD_URL": "https://a.example.com,https://a.example.com",
                "FORWARD_SECRET": SECRET,
            },
            "twice",
        ),
        ({"FORWARD_EVENTS": "message.gone"}, "unknown event types"),
        ({"FORWARD_PROVIDERS": "verihub"}, "FORWARD_PROVIDERS"),
        ({"FORWARD_TIMEOUT": "0"}, "FORWARD_TIMEOUT"),
        ({"DELIVERY_TIMEOUT": "-1"}, "DELIVERY_TIMEOUT"),
    ],
)
def test_bad_forward_settings_stop_start_up(env, message):
    with pytest.raises(ValueError, match=message):
        _forward(**env)


def test_the_readme_shows_the_bytes_that_are_sent():
    """The README's example is the OpenAPI document's, which core.webhooks builds."""
    import orjson

    from receiver.openapi import events
    from tests.support import ROOT

    example = events.examples()["delivered"]["value"]
    assert (
        orjson.dumps(example, option=orjson.OPT_SORT_KEYS).decode()
        in (ROOT / "README.md").read_text()
    )
