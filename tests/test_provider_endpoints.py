"""Provider endpoints through the real app (Starlette TestClient) against the private Redis:
signed callbacks are queued, applied by the job and read back from /messages, /billing and
/metrics; refused ones are answered with a JSON error, counted, and queue nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import httpx2 as httpx
import pytest
from nacl.signing import SigningKey
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator

from core.embedded import free_port
from receiver.app import create_app
from tests.conftest import ADMIN_TOKEN, CALLBACK_TOKEN, make_settings, metric, run_jobs
from tests.test_providers import meta_notification
from tools.stack import wait_until

ROOT = Path(__file__).resolve().parent.parent
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
QUEUE = "rq:queue:otp-callbacks"
FORM = {"content-type": "application/x-www-form-urlencoded"}

SIGNING_KEY = SigningKey.generate()
TELNYX_KEY = base64.b64encode(bytes(SIGNING_KEY.verify_key)).decode()
PHONE, CUSTOM_CODE = "+13125000000", "25565"
META_SECRET, META_TOKEN = "meta-app-secret", "meta-verify-token"
TWILIO_TOKEN, PUBLIC_URL = "twilio-auth-token", "https://otp.example.com"
TWILIO_URL = PUBLIC_URL + "/callbacks/twilio"
WAMIDS = [
    "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA",
    "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJCODc5QjBGQzJBMjE0QkQwNEUA",
    "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBIyRkM1QUU4QjkwQTdERTAxOTgA",
    "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3NjdFNkFFNTM2RDVBRjE3NUQA",
]


@pytest.fixture
def app_client(redis_server, store):
    """Builds clients of the real app, each with its own settings (and client address)."""
    with ExitStack() as stack:

        def make(client: tuple[str, int] | None = None, **env: str) -> TestClient:
            settings = make_settings(redis_server.url, **env)
            extra = {"client": client} if client else {}
            app = create_app(settings, CollectorRegistry())
            return stack.enter_context(TestClient(app, **extra))

        yield make


def message(client: TestClient, provider: str, message_id: str) -> dict:
    response = client.get(f"/messages/{provider}/{message_id}", headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()


def billing(client: TestClient) -> dict[tuple[str, str], int]:
    days = client.get("/billing", headers=ADMIN).json()["days"]
    return {(d["provider"], d["product"]): d["billable"] for d in days}


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def assert_refused(response, redis, client, code: int, reason: str) -> None:
    assert response.status_code == code, response.text
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"error"}
    assert redis.llen(QUEUE) == 0
    assert metric(client, "otp_callbacks_rejected_total", reason=reason) == 1


# Telnyx Verify -----------------------------------------------------------------------------


def telnyx_event(event_type: str, verification: str, occurred: float, **payload: str) -> dict:
    return {
        "data": {
            "event_type": event_type,
            "id": "0ccc7b54-4df3-4bca-a65a-3da1ecc777f0",
            "occurred_at": iso(occurred),
            "payload": {
                "id": verification,
                "type": "sms",
                "delivery_status": "delivered",
                "custom_code": CUSTOM_CODE,
                "phone_number": PHONE,
                "status": "pending",
                "verify_profile_id": "12ade33a-21c0-473b-b055-b3c836e1c293",
                **payload,
            },
            "record_type": "event",
        },
        "meta": {"attempt": 1, "delivered_to": "https://otp.example.com/callbacks/telnyx"},
    }


def telnyx_headers(raw: bytes, key: SigningKey = SIGNING_KEY, skew: int = 0) -> dict[str, str]:
    timestamp = str(int(time.time()) + skew)
    signature = key.sign(timestamp.encode() + b"|" + raw).signature
    return {
        "content-type": "application/json",
        "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
        "telnyx-timestamp": timestamp,
    }


def post_telnyx(client: TestClient, event: dict, **signing) -> httpx.Response:
    raw = json.dumps(event).encode()
    return client.post("/callbacks/telnyx", content=raw, headers=telnyx_headers(raw, **signing))


def test_telnyx_events_are_applied_at_their_occurred_at(app_client, redis, settings):
    client = app_client(TELNYX_PUBLIC_KEY=TELNYX_KEY)
    t = int(time.time()) - 600  # whole seconds: t + 4.25 is exact in binary
    events = [
        telnyx_event("verify.sent", "v-delivered", t),
        telnyx_event("verify.delivered", "v-delivered", t + 4.25),
        telnyx_event("verify.sent", "v-failed", t, type="whatsapp"),
        telnyx_event("verify.failed", "v-failed", t + 30, type="whatsapp"),
        telnyx_event("verify.sent", "v-complete", t),
        telnyx_event("verification.complete", "v-complete", t + 60, status="accepted"),
        telnyx_event("verify.completed", "v-completed", t + 61, status="accepted"),
    ]
    for event in events:
        response = post_telnyx(client, event)
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "accepted", "events": 1}
    run_jobs(redis, settings)

    delivered = message(client, "telnyx", "v-delivered")
    assert (delivered["product"], delivered["state"], delivered["billable"]) == (
        "sms",
        "delivered",
        True,
    )
    assert delivered["statuses"] == [
        {"status": "sent", "first_seen": iso(t)},
        {"status": "delivered", "first_seen": iso(t + 4.25)},
    ]
    assert delivered["first_seen"] == iso(t)
    failed = message(client, "telnyx", "v-failed")
    assert (failed["product"], failed["state"]) == ("whatsapp", "failed")
    assert message(client, "telnyx", "v-complete")["state"] == "verified"
    completed = message(client, "telnyx", "v-completed")
    assert completed["statuses"] == [{"status": "verified", "first_seen": iso(t + 61)}]
    assert metric(client, "otp_delivery_latency_seconds_sum", provider="telnyx") == 4.25


def test_telnyx_unknown_event_type_is_accepted_and_counted(app_client, redis, settings):
    client = app_client(TELNYX_PUBLIC_KEY=TELNYX_KEY)
    t = time.time() - 5
    assert post_telnyx(client, telnyx_event("verify.reminder", "v-odd", t)).status_code == 200
    unaccepted = telnyx_event("verify.completed", "v-expired", t, status="expired")
    assert post_telnyx(client, unaccepted).status_code == 200
    run_jobs(redis, settings)
    assert metric(client, "otp_callbacks_unknown_total", provider="telnyx", product="sms") == 2
    odd = message(client, "telnyx", "v-odd")
    assert (odd["state"], odd["statuses"], odd["billable"]) == ("none", [], False)
    assert [u["code"] for u in odd["unknown"]] == [-1]
    assert message(client, "telnyx", "v-expired")["state"] == "none"


RAW = json.dumps(telnyx_event("verify.delivered", "v-refused", 1.7e9)).encode()
TAMPERED = RAW.replace(b"delivered", b"failed", 1)


def _without(name: str) -> dict[str, str]:
    return {k: v for k, v in telnyx_headers(RAW).items() if k != name}


# Headers are signed when the test runs: a timestamp taken at collection could go stale.
# 310 s, not 301: whole-second timestamps against a fractional clock must stay > 300 s off.
@pytest.mark.parametrize(
    ("content", "headers", "reason"),
    [
        pytest.param(
            RAW, lambda: telnyx_headers(RAW, SigningKey.generate()), "bad_signature", id="wrong-key"
        ),
        pytest.param(TAMPERED, lambda: telnyx_headers(RAW), "bad_signature", id="tampered-body"),
        pytest.param(RAW, lambda: telnyx_headers(RAW, skew=-310), "stale_timestamp", id="too-old"),
        pytest.param(
            RAW, lambda: telnyx_headers(RAW, skew=310), "stale_timestamp", id="from-the-future"
        ),
        pytest.param(
            RAW, lambda: {"content-type": "application/json"}, "missing_signature", id="unsigned"
        ),
        pytest.param(
            RAW, lambda: _without("telnyx-timestamp"), "missing_signature", id="no-timestamp"
        ),
        pytest.param(
            RAW,
            lambda: _without("telnyx-signature-ed25519"),
            "missing_signature",
            id="no-signature",
        ),
    ],
)
def test_telnyx_unauthenticated_requests_are_401_and_queue_nothing(
    app_client, redis, content, headers, reason
):
    client = app_client(TELNYX_PUBLIC_KEY=TELNYX_KEY)
    response = client.post("/callbacks/telnyx", content=content, headers=headers())
    assert response.json()["error"]
    assert_refused(response, redis, client, 401, reason)


def test_telnyx_without_a_public_key_is_closed(app_client, redis):
    client = app_client()
    response = post_telnyx(client, telnyx_event("verify.sent", "v-closed", time.time()))
    assert response.json() == {"error": "not found"}
    assert_refused(response, redis, client, 404, "callbacks_closed")


def test_telnyx_without_a_key_but_opted_out_accepts_unsigned(app_client, redis, settings):
    client = app_client(ALLOW_UNAUTHENTICATED_CALLBACKS="true")
    raw = json.dumps(telnyx_event("verify.sent", "v-open", time.time())).encode()
    response = client.post("/callbacks/telnyx", content=raw)
    assert response.status_code == 200
    run_jobs(redis, settings)
    assert message(client, "telnyx", "v-open")["state"] == "sent"


# Verihubs SMS OTP --------------------------------------------------------------------------


def test_verihubs_sms_otp_codes_and_billing(app_client, redis, settings):
    client = app_client()
    url = f"/callbacks/verihubs/sms-otp/{CALLBACK_TOKEN}"
    states = [
        "requested",
        "delivered",
        "verified",
        "unverified",
        "failed",
        "request_error",
        "rejected",
        "undelivered",
        "no_delivery_report",
        "blocked",
    ]
    for code in range(10):
        params = {"session_id": f"sms-{code}", "status": str(code)}
        assert client.get(url, params=params).status_code == 200
    run_jobs(redis, settings)
    seen = {
        code: (m["product"], m["state"], m["billable"])
        for code in range(10)
        for m in [message(client, "verihubs", f"sms-{code}")]
    }
    charged = {1, 2, 3, 7, 8}
    assert seen == {c: ("sms-otp", states[c], c in charged) for c in range(10)}
    assert billing(client) == {("verihubs", "sms-otp"): len(charged)}


# Meta WhatsApp Cloud API -------------------------------------------------------------------


def meta_status(wamid: str, name: str, at: int, **extra: object) -> dict:
    status = {"id": wamid, "status": name, "timestamp": str(at), "recipient_id": "16505551234"}
    if name in ("sent", "delivered", "read"):
        status["conversation"] = {"id": "c1b5c5b0e6f0", "origin": {"type": "authentication"}}
    return {**status, **extra}


def post_meta(client: TestClient, raw: bytes, secret: str = META_SECRET) -> httpx.Response:
    signature = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return client.post(
        "/callbacks/meta",
        content=raw,
        headers={"content-type": "application/json", "X-Hub-Signature-256": signature},
    )


def handshake(client: TestClient, token: str, challenge: str) -> httpx.Response:
    params = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": challenge}
    return client.get("/callbacks/meta", params=params)


def test_meta_handshake(app_client):
    client = app_client(META_VERIFY_TOKEN=META_TOKEN)
    response = handshake(client, META_TOKEN, "1158201444")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "1158201444"
    refused = handshake(client, "not-the-token", "1158201444")
    assert (refused.status_code, refused.json()) == (403, {"error": "verification failed"})
    assert "1158201444" not in refused.text
    assert handshake(client, META_TOKEN, "<script>").status_code == 400
    assert handshake(client, META_TOKEN, "").status_code == 400
    assert metric(client, "otp_callbacks_rejected_total", reason="bad_verify_token") == 1
    assert metric(client, "otp_callbacks_rejected_total", reason="invalid_challenge") == 2


@pytest.mark.parametrize("env", [{}, {"META_VERIFY_TOKEN": ""}])
def test_meta_handshake_is_closed_without_a_verify_token(app_client, env):
    client = app_client(META_APP_SECRET=META_SECRET, **env)
    response = handshake(client, "", "1158201444")
    assert (response.status_code, response.json()) == (404, {"error": "not found"})


def test_meta_notification_with_many_statuses(app_client, redis, settings):
    client = app_client(META_APP_SECRET=META_SECRET)
    t = int(time.time()) - 300
    pricing = {"pricing_model": "PMP", "category": "authentication"}
    notification = meta_notification(
        [
            meta_status(WAMIDS[0], "sent", t),
            meta_status(WAMIDS[0], "delivered", t + 3),
            meta_status(WAMIDS[1], "sent", t + 1),
        ],
        [
            meta_status(WAMIDS[0], "read", t + 20),
            meta_status(
                WAMIDS[1],
                "failed",
                t + 9,
                errors=[{"code": 131026, "title": "Message undeliverable"}],
            ),
            meta_status(WAMIDS[2], "delivered", t + 2, pricing={**pricing, "billable": False}),
            meta_status(WAMIDS[3], "sent", t + 5, pricing={**pricing, "billable": True}),
        ],
    )
    response = post_meta(client, json.dumps(notification).encode())
    assert (response.status_code, response.json()) == (200, {"status": "accepted", "events": 7})
    run_jobs(redis, settings)

    read = message(client, "meta", WAMIDS[0])
    assert (read["product"], read["state"], read["billable"]) == ("whatsapp", "read", True)
    assert read["statuses"] == [
        {"status": "sent", "first_seen": iso(t)},
        {"status": "delivered", "first_seen": iso(t + 3)},
        {"status": "read", "first_seen": iso(t + 20)},
    ]
    failed = message(client, "meta", WAMIDS[1])
    assert (failed["state"], failed["billable"]) == ("failed", False)
    assert failed["statuses"][-1] == {"status": "failed", "first_seen": iso(t + 9)}
    # Meta's own billing flag overrides the table (delivered is charged, sent is not).
    free = message(client, "meta", WAMIDS[2])
    assert (free["state"], free["billable"]) == ("delivered", False)
    charged = message(client, "meta", WAMIDS[3])
    assert (charged["state"], charged["billable"]) == ("sent", True)
    assert billing(client) == {("meta", "whatsapp"): 2}
    assert metric(client, "otp_callbacks_received_total", provider="meta") == 7


def test_meta_inbound_message_notification_queues_nothing(app_client, redis):
    client = app_client(META_APP_SECRET=META_SECRET)
    notification = meta_notification([])
    value = notification["entry"][0]["changes"][0]["value"]
    del value["statuses"]
    value["contacts"] = [{"profile": {"name": "Kerry Fisher"}, "wa_id": "16315551234"}]
    value["messages"] = [
        {
            "from": "16315551234",
            "id": WAMIDS[0],
            "timestamp": str(int(time.time())),
            "type": "text",
            "text": {"body": "Hello"},
        }
    ]
    response = post_meta(client, json.dumps(notification).encode())
    assert (response.status_code, response.json()) == (200, {"status": "accepted", "events": 0})
    assert redis.llen(QUEUE) == 0


META_RAW = json.dumps(meta_notification([meta_status(WAMIDS[0], "sent", 1_700_000_000)])).encode()


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing_signature"),
        ({"X-Hub-Signature-256": "sha256=" + "0" * 64}, "bad_signature"),
        (
            {
                "X-Hub-Signature-256": "sha256="
                + hmac.new(b"old-secret", META_RAW, hashlib.sha256).hexdigest()
            },
            "bad_signature",
        ),
    ],
)
def test_meta_unsigned_or_badly_signed_posts_are_401(app_client, redis, headers, reason):
    client = app_client(META_APP_SECRET=META_SECRET)
    response = client.post("/callbacks/meta", content=META_RAW, headers=headers)
    assert_refused(response, redis, client, 401, reason)


def test_meta_json_nested_deeper_than_the_limit_is_400(app_client, redis):
    client = app_client(META_APP_SECRET=META_SECRET, MAX_JSON_DEPTH="16")
    deep: dict = {"x": 1}
    for _ in range(16):
        deep = {"x": deep}
    notification = meta_notification([meta_status(WAMIDS[0], "sent", int(time.time()))])
    notification["entry"][0]["extra"] = deep
    response = post_meta(client, json.dumps(notification).encode())
    assert "deeper than 16" in response.json()["error"]
    assert_refused(response, redis, client, 400, "json_too_deep")


@pytest.mark.parametrize("raw", [b'{"entry": [', b"[]"])
def test_meta_invalid_json_is_400(app_client, redis, raw):
    client = app_client(META_APP_SECRET=META_SECRET)
    assert_refused(post_meta(client, raw), redis, client, 400, "invalid_json")


def test_meta_empty_app_secret_keeps_the_endpoint_closed(app_client, redis):
    # An empty secret is no secret: an HMAC with an empty key must not open the endpoint.
    client = app_client(META_APP_SECRET="")
    response = post_meta(client, META_RAW, secret="")
    assert_refused(response, redis, client, 404, "callbacks_closed")


# Twilio ------------------------------------------------------------------------------------


def twilio_params(sid: str, status: str, sender: str, **extra: str) -> dict[str, str]:
    return {
        "AccountSid": "AC" + "f" * 32,
        "ApiVersion": "2010-04-01",
        "From": sender,
        "MessageSid": sid,
        "MessageStatus": status,
        "SmsSid": sid,
        "SmsStatus": status,
        "To": sender.replace("+14155238886", "+15017122661"),
        **extra,
    }


def post_twilio(
    client: TestClient, params: dict[str, str], url: str = TWILIO_URL, token: str = TWILIO_TOKEN
) -> httpx.Response:
    signature = RequestValidator(token).compute_signature(url, params)
    return client.post(
        "/callbacks/twilio",
        content=urlencode(params).encode(),
        headers={**FORM, "X-Twilio-Signature": signature},
    )


def sid(n: int) -> str:
    return f"SM{n:032x}"


def test_twilio_status_callbacks(app_client, redis, settings):
    client = app_client(TWILIO_AUTH_TOKEN=TWILIO_TOKEN, PUBLIC_URL=PUBLIC_URL)
    whatsapp, sms = "whatsapp:+14155238886", "+14155238886"
    callbacks = [
        twilio_params(sid(1), "queued", whatsapp),
        twilio_params(sid(1), "sent", whatsapp),
        twilio_params(sid(1), "delivered", whatsapp),
        twilio_params(sid(1), "read", whatsapp),
        twilio_params(sid(2), "queued", sms),
        twilio_params(sid(2), "sent", sms),
        twilio_params(sid(2), "undelivered", sms, ErrorCode="30003"),
        twilio_params(sid(3), "queued", sms),
        twilio_params(sid(3), "failed", sms, ErrorCode="30008"),
        # A blank ErrorCode is part of what Twilio signed: it must be kept to verify.
        twilio_params(sid(4), "delivered", whatsapp, ErrorCode=""),
    ]
    for params in callbacks:
        response = post_twilio(client, params)
        assert response.status_code == 200, response.text
    run_jobs(redis, settings)
    states = {
        n: (m["product"], m["state"], m["billable"])
        for n in (1, 2, 3, 4)
        for m in [message(client, "twilio", sid(n))]
    }
    assert states == {
        1: ("whatsapp", "read", True),
        2: ("sms", "undelivered", True),  # left for the carrier: charged
        3: ("sms", "failed", False),
        4: ("whatsapp", "delivered", True),
    }
    assert billing(client) == {("twilio", "whatsapp"): 2, ("twilio", "sms"): 1}


@pytest.mark.parametrize(
    ("url", "token"),
    [
        ("http://testserver/callbacks/twilio", TWILIO_TOKEN),  # the URL behind the proxy
        (PUBLIC_URL + "/callbacks/other", TWILIO_TOKEN),
        (TWILIO_URL, "another-token"),
    ],
)
def test_twilio_signature_for_another_url_or_token_is_401(app_client, redis, url, token):
    client = app_client(TWILIO_AUTH_TOKEN=TWILIO_TOKEN, PUBLIC_URL=PUBLIC_URL)
    response = post_twilio(client, twilio_params(sid(5), "sent", "+14155238886"), url, token)
    assert_refused(response, redis, client, 401, "bad_signature")


def test_twilio_unsigned_is_401(app_client, redis):
    client = app_client(TWILIO_AUTH_TOKEN=TWILIO_TOKEN, PUBLIC_URL=PUBLIC_URL)
    params = twilio_params(sid(6), "sent", "+14155238886")
    response = client.post("/callbacks/twilio", content=urlencode(params).encode(), headers=FORM)
    assert_refused(response, redis, client, 401, "missing_signature")


def test_twilio_without_public_url_checks_the_url_called(app_client):
    client = app_client(TWILIO_AUTH_TOKEN=TWILIO_TOKEN)
    params = twilio_params(sid(7), "sent", "+14155238886")
    assert post_twilio(client, params, "http://testserver/callbacks/twilio").status_code == 200
    assert post_twilio(client, params, TWILIO_URL).status_code == 401


# Source allowlists and proxies -------------------------------------------------------------

VERIHUBS = f"/callbacks/verihubs/whatsapp-otp/{CALLBACK_TOKEN}"
ONE = {"session_id": "src-1", "status": "1"}


def test_allowlist_refuses_other_sources(app_client, redis):
    outside = app_client(VERIHUBS_ALLOWED_NETWORKS="10.0.0.0/8")  # address "testclient"
    response = outside.get(VERIHUBS, params=ONE)
    assert response.json() == {"error": "forbidden"}
    assert_refused(response, redis, outside, 403, "source_not_allowed")
    other = app_client(("192.168.1.5", 1234), VERIHUBS_ALLOWED_NETWORKS="10.0.0.0/8")
    assert other.get(VERIHUBS, params=ONE).status_code == 403
    inside = app_client(("10.1.2.3", 1234), VERIHUBS_ALLOWED_NETWORKS="10.0.0.0/8")
    assert inside.get(VERIHUBS, params=ONE).status_code == 200
    assert redis.llen(QUEUE) == 1


def test_allowlist_is_per_provider(app_client):
    client = app_client(
        ("192.168.1.5", 1234),
        VERIHUBS_ALLOWED_NETWORKS="10.0.0.0/8",
        ALLOW_UNAUTHENTICATED_CALLBACKS="1",
    )
    raw = json.dumps(telnyx_event("verify.sent", "v-any-source", time.time())).encode()
    assert client.post("/callbacks/telnyx", content=raw).status_code == 200
    assert client.get(VERIHUBS, params=ONE).status_code == 403


def test_forwarded_address_is_checked_behind_a_trusted_proxy(app_client, redis):
    proxy = ("172.16.0.1", 40000)
    client = app_client(proxy, VERIHUBS_ALLOWED_NETWORKS="10.0.0.0/8", TRUSTED_PROXIES="172.16.0.1")
    assert (
        client.get(VERIHUBS, params=ONE, headers={"X-Forwarded-For": "10.1.2.3"}).status_code == 200
    )
    outside = {"X-Forwarded-For": "192.168.1.5"}
    assert client.get(VERIHUBS, params=ONE, headers=outside).status_code == 403
    # A caller cannot slip an allowed address in front: the proxy appends the real one.
    spoofed = {"X-Forwarded-For": "10.1.2.3, 192.168.1.5"}
    assert client.get(VERIHUBS, params=ONE, headers=spoofed).status_code == 403
    assert redis.llen(QUEUE) == 1


def test_forwarded_address_is_ignored_without_trusted_proxies(app_client, redis):
    client = app_client(("192.168.1.5", 1234), VERIHUBS_ALLOWED_NETWORKS="10.0.0.0/8")
    forged = {"X-Forwarded-For": "10.1.2.3"}
    assert_refused(
        client.get(VERIHUBS, params=ONE, headers=forged), redis, client, 403, "source_not_allowed"
    )


def test_invalid_cidr_stops_start_up(redis_server):
    settings = make_settings(redis_server.url, TELNYX_ALLOWED_NETWORKS="10.0.0.0/8,10.0.0.300/32")
    app = create_app(settings, CollectorRegistry())
    with pytest.raises(ValueError, match=r"10\.0\.0\.300/32"), TestClient(app):
        pass


# The real process: what it prints and what it gets over the wire -------------------------


@contextmanager
def live_receiver(redis_url: str) -> Iterator[str]:
    """uvicorn as the Procfile runs it, with its stdout inherited: started from a test body,
    capfd captures the lines it logs."""
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "info",
        "TELNYX_PUBLIC_KEY": TELNYX_KEY,
        "META_APP_SECRET": META_SECRET,
        "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "PUBLIC_URL": PUBLIC_URL,
    }
    args = [sys.executable, "-m", "uvicorn", "--factory", "receiver.app:create_app",
            "--port", str(port), "--no-access-log", "--no-proxy-headers",
            "--log-level", "warning"]  # fmt: skip
    process = subprocess.Popen(args, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url + "/healthz"), what="receiver start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_phone_numbers_and_codes_stay_out_of_the_logs(redis, redis_server, capfd):
    event = telnyx_event("verify.delivered", "v-logged", time.time())
    signed = json.dumps(event).encode()
    del event["data"]["payload"]["id"]
    no_id = json.dumps(event).encode()
    meta_raw = json.dumps(
        meta_notification([meta_status(WAMIDS[0], "sent", int(time.time()))])
    ).encode()
    meta_signature = (
        "sha256=" + hmac.new(META_SECRET.encode(), meta_raw, hashlib.sha256).hexdigest()
    )
    params = twilio_params(sid(8), "delivered", "whatsapp:+14155238886")
    twilio_signature = RequestValidator(TWILIO_TOKEN).compute_signature(TWILIO_URL, params)
    with live_receiver(redis_server.url) as url:
        telnyx_url = url + "/callbacks/telnyx"
        codes = [
            httpx.post(telnyx_url, content=signed, headers=telnyx_headers(signed)).status_code,
            # Refused ones too: another key, and a signed payload without a verification id.
            httpx.post(
                telnyx_url, content=signed, headers=telnyx_headers(signed, SigningKey.generate())
            ).status_code,
            httpx.post(telnyx_url, content=no_id, headers=telnyx_headers(no_id)).status_code,
            httpx.post(
                url + "/callbacks/meta",
                content=meta_raw,
                headers={"X-Hub-Signature-256": meta_signature},
            ).status_code,
            httpx.post(
                url + "/callbacks/twilio",
                data=params,
                headers={"X-Twilio-Signature": twilio_signature},
            ).status_code,
        ]
    assert codes == [200, 401, 400, 200, 200]

    captured = capfd.readouterr()  # the process has exited: every line is flushed
    logged = captured.out + captured.err
    lines = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    callbacks = [
        line for line in lines if line.get("event") == "request" and line["route"] != "/healthz"
    ]
    assert [(r["route"], r["status"]) for r in callbacks] == [
        ("/callbacks/telnyx", 200),
        ("/callbacks/telnyx", 401),
        ("/callbacks/telnyx", 400),
        ("/callbacks/meta", 200),
        ("/callbacks/twilio", 200),
    ]
    assert callbacks[0]["message_id"] == "v-logged"  # the ids are logged ...
    for number in (PHONE, PHONE[1:], "15017122661", "14155238886", "16505551234"):
        assert number not in logged  # ... the phone numbers are not
    assert f'"{CUSTOM_CODE}"' not in logged and "custom_code" not in logged
    # A wamid encodes the recipient's number (base64): only a digest of it is logged.
    assert WAMIDS[0] not in logged and WAMIDS[0].removeprefix("wamid.") not in logged
    assert callbacks[3]["message_id"].startswith("sha256:")


def test_non_ascii_digits_in_the_telnyx_timestamp_are_401_not_500(redis, redis_server):
    # Over the wire a header byte 0xB2 reads as "²", a digit to str.isdigit() but not to int().
    raw = json.dumps(telnyx_event("verify.sent", "v-digits", time.time())).encode()
    headers = [(b"telnyx-signature-ed25519", b"c2ln"), (b"telnyx-timestamp", b"\xb2")]
    with live_receiver(redis_server.url) as url:
        response = httpx.post(url + "/callbacks/telnyx", content=raw, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "telnyx-timestamp is not a unix time"}
