"""POST /callbacks/telnyx through the real app against the private Redis: signed Telnyx Verify
webhooks are applied at their occurred_at and read back; unknown event types are accepted and
counted; unauthenticated ones are 401 and queue nothing; without a public key it is closed;
and, over the wire to a live receiver, a timestamp of non-ASCII digits is a 401, not a 500."""

from __future__ import annotations

import json
import time

import httpx2 as httpx
import pytest
from nacl.signing import SigningKey
from starlette.testclient import TestClient

from tests.samples import (
    JSON,
    PUBLIC_URL,
    SECRETS,
    TELNYX_PUBLIC_KEY,
    iso,
    telnyx_completion,
    telnyx_event,
    telnyx_headers,
)
from tests.support import assert_refused, live_receiver, message, metric, run_jobs


def post_telnyx(client: TestClient, event: dict, **signing) -> httpx.Response:
    raw = json.dumps(event).encode()
    return client.post(
        "/callbacks/telnyx", content=raw, headers={**JSON, **telnyx_headers(raw, **signing)}
    )


def test_telnyx_events_are_applied_at_their_occurred_at(app_client, redis, settings):
    client = app_client(TELNYX_PUBLIC_KEY=TELNYX_PUBLIC_KEY)
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
    client = app_client(TELNYX_PUBLIC_KEY=TELNYX_PUBLIC_KEY)
    t = time.time() - 5
    assert post_telnyx(client, telnyx_event("verify.reminder", "v-odd", t)).status_code == 200
    pending = telnyx_event("verify.completed", "v-pending", t, status="pending")
    assert post_telnyx(client, pending).status_code == 200
    # Changed: an expired completion was unknown; Telnyx documents it as an outcome.
    expired = telnyx_event("verify.completed", "v-expired", t, status="expired")
    assert post_telnyx(client, expired).status_code == 200
    run_jobs(redis, settings)
    assert metric(client, "otp_callbacks_unknown_total", provider="telnyx", product="sms") == 2
    odd = message(client, "telnyx", "v-odd")
    assert (odd["state"], odd["statuses"], odd["billable"]) == ("none", [], False)
    assert [u["code"] for u in odd["unknown"]] == [-1]
    assert message(client, "telnyx", "v-pending")["state"] == "none"
    unverified = message(client, "telnyx", "v-expired")
    assert (unverified["state"], unverified["billable"]) == ("unverified", True)


def test_telnyx_documented_outcomes_are_applied_and_billed(app_client, redis, settings):
    client = app_client(TELNYX_PUBLIC_KEY=TELNYX_PUBLIC_KEY)
    t = int(time.time()) - 60
    events = [
        telnyx_event("verify.sent", "v-undelivered", t),
        telnyx_event("verify.failed", "v-undelivered", t + 5, delivery_status="delivery_failed"),
        telnyx_event("verify.sent", "v-unconfirmed", t),
        telnyx_event("verify.sent", "v-unconfirmed", t + 9, delivery_status="delivery_unconfirmed"),
        telnyx_completion("invalid", "v-invalid"),
        telnyx_completion("error", "v-unanswered"),
    ]
    for event in events:
        assert post_telnyx(client, event).status_code == 200
    run_jobs(redis, settings)
    states = {
        v: (m["product"], m["state"], m["billable"])
        for v in ("v-undelivered", "v-unconfirmed", "v-invalid", "v-unanswered")
        for m in [message(client, "telnyx", v)]
    }
    assert states == {
        "v-undelivered": ("sms", "undelivered", False),  # our assumption: not charged
        "v-unconfirmed": ("sms", "no_delivery_report", True),
        "v-invalid": ("dtmf_confirm", "unverified", True),  # the call was made: charged
        "v-unanswered": ("dtmf_confirm", "undelivered", False),
    }


RAW = json.dumps(telnyx_event("verify.delivered", "v-refused", 1.7e9)).encode()
TAMPERED = RAW.replace(b"delivered", b"failed", 1)


def _signed(**signing) -> dict[str, str]:
    return {**JSON, **telnyx_headers(RAW, **signing)}


def _without(name: str) -> dict[str, str]:
    return {k: v for k, v in _signed().items() if k != name}


# Headers are signed when the test runs: a timestamp taken at collection could go stale.
# 310 s, not 301: whole-second timestamps against a fractional clock must stay > 300 s off.
@pytest.mark.parametrize(
    ("content", "headers", "reason"),
    [
        pytest.param(
            RAW, lambda: _signed(key=SigningKey.generate()), "bad_signature", id="wrong-key"
        ),
        pytest.param(TAMPERED, _signed, "bad_signature", id="tampered-body"),
        pytest.param(RAW, lambda: _signed(skew=-310), "stale_timestamp", id="too-old"),
        pytest.param(RAW, lambda: _signed(skew=310), "stale_timestamp", id="from-the-future"),
        pytest.param(RAW, lambda: JSON, "missing_signature", id="unsigned"),
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
    client = app_client(TELNYX_PUBLIC_KEY=TELNYX_PUBLIC_KEY)
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


def test_non_ascii_digits_in_the_telnyx_timestamp_are_401_not_500(redis, redis_server):
    # Over the wire a header byte 0xB2 reads as "²", a digit to str.isdigit() but not to int().
    raw = json.dumps(telnyx_event("verify.sent", "v-digits", time.time())).encode()
    headers = [(b"telnyx-signature-ed25519", b"c2ln"), (b"telnyx-timestamp", b"\xb2")]
    with live_receiver(redis_server.url, **SECRETS, PUBLIC_URL=PUBLIC_URL) as url:
        response = httpx.post(url + "/callbacks/telnyx", content=raw, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "telnyx-timestamp is not a unix time"}
