"""/callbacks/meta through the real app against the private Redis: the subscription handshake,
signed notifications with many statuses applied and billed (Meta's own billing flag first),
inbound messages queueing nothing, and bad signatures, JSON and secrets refused."""

from __future__ import annotations

import json
import time

import httpx2 as httpx
import pytest
from starlette.testclient import TestClient

from tests.samples import (
    JSON,
    META_APP_SECRET,
    META_VERIFY_TOKEN,
    PRICING,
    WAMIDS,
    iso,
    meta_example,
    meta_headers,
    meta_notification,
    meta_pricing,
    meta_status,
)
from tests.support import QUEUE, assert_refused, billing, message, metric, run_jobs


def post_meta(client: TestClient, raw: bytes, secret: str = META_APP_SECRET) -> httpx.Response:
    return client.post(
        "/callbacks/meta", content=raw, headers={**JSON, **meta_headers(raw, secret)}
    )


def handshake(client: TestClient, token: str, challenge: str) -> httpx.Response:
    params = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": challenge}
    return client.get("/callbacks/meta", params=params)


def test_meta_handshake(app_client):
    client = app_client(META_VERIFY_TOKEN=META_VERIFY_TOKEN)
    response = handshake(client, META_VERIFY_TOKEN, "1158201444")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "1158201444"
    refused = handshake(client, "not-the-token", "1158201444")
    assert (refused.status_code, refused.json()) == (403, {"error": "verification failed"})
    assert "1158201444" not in refused.text
    assert handshake(client, META_VERIFY_TOKEN, "<script>").status_code == 400
    assert handshake(client, META_VERIFY_TOKEN, "").status_code == 400
    assert metric(client, "otp_callbacks_rejected_total", reason="bad_verify_token") == 1
    assert metric(client, "otp_callbacks_rejected_total", reason="invalid_challenge") == 2


@pytest.mark.parametrize("env", [{}, {"META_VERIFY_TOKEN": ""}])
def test_meta_handshake_is_closed_without_a_verify_token(app_client, env):
    client = app_client(META_APP_SECRET=META_APP_SECRET, **env)
    response = handshake(client, "", "1158201444")
    assert (response.status_code, response.json()) == (404, {"error": "not found"})


def test_meta_notification_with_many_statuses(app_client, redis, settings):
    client = app_client(META_APP_SECRET=META_APP_SECRET)
    t = int(time.time()) - 300
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
            meta_status(WAMIDS[2], "delivered", t + 2, pricing={**PRICING, "billable": False}),
            meta_status(WAMIDS[3], "sent", t + 5, pricing={**PRICING, "billable": True}),
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
    # Meta's own billing flag decides among the charged states: a free delivered message is
    # not billed. Changed: a flag on `sent` is only a forecast, since Meta charges "only ...
    # when a template message is delivered" (it was billed).
    free = message(client, "meta", WAMIDS[2])
    assert (free["state"], free["billable"]) == ("delivered", False)
    forecast = message(client, "meta", WAMIDS[3])
    assert (forecast["state"], forecast["billable"]) == ("sent", False)
    assert billing(client) == {("meta", "whatsapp"): 1}
    assert metric(client, "otp_callbacks_received_total", provider="meta") == 7


def test_meta_documented_statuses_and_pricing_are_billed(app_client, redis, settings):
    client = app_client(META_APP_SECRET=META_APP_SECRET)
    t = int(time.time()) - 300
    free = meta_pricing("free_customer_service", False, category="service")
    notification = meta_notification(
        [
            meta_example("sent", t, WAMIDS[0]),  # PMP, regular: billed once delivered
            meta_example("delivered", t + 2, WAMIDS[0]),
            meta_status(WAMIDS[1], "delivered", t + 2, pricing=free),
            meta_example("read", t + 3, WAMIDS[2]),  # CBP: per conversation, not per message
            meta_example("played", t + 4, WAMIDS[3]),  # no pricing: the table (read) decides
        ]
    )
    response = post_meta(client, json.dumps(notification).encode())
    assert (response.status_code, response.json()) == (200, {"status": "accepted", "events": 5})
    run_jobs(redis, settings)
    states = [(m["state"], m["billable"]) for w in WAMIDS for m in [message(client, "meta", w)]]
    assert states == [("delivered", True), ("delivered", False), ("read", False), ("read", True)]
    assert billing(client) == {("meta", "whatsapp"): 2}


def test_meta_inbound_message_notification_queues_nothing(app_client, redis):
    client = app_client(META_APP_SECRET=META_APP_SECRET)
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
        ({"x-hub-signature-256": "sha256=" + "0" * 64}, "bad_signature"),
        (meta_headers(META_RAW, "old-secret"), "bad_signature"),
    ],
)
def test_meta_unsigned_or_badly_signed_posts_are_401(app_client, redis, headers, reason):
    client = app_client(META_APP_SECRET=META_APP_SECRET)
    response = client.post("/callbacks/meta", content=META_RAW, headers=headers)
    assert_refused(response, redis, client, 401, reason)


def test_meta_json_nested_deeper_than_the_limit_is_400(app_client, redis):
    client = app_client(META_APP_SECRET=META_APP_SECRET, MAX_JSON_DEPTH="16")
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
    client = app_client(META_APP_SECRET=META_APP_SECRET)
    assert_refused(post_meta(client, raw), redis, client, 400, "invalid_json")


def test_meta_empty_app_secret_keeps_the_endpoint_closed(app_client, redis):
    # An empty secret is no secret: an HMAC with an empty key must not open the endpoint.
    client = app_client(META_APP_SECRET="")
    response = post_meta(client, META_RAW, secret="")
    assert_refused(response, redis, client, 404, "callbacks_closed")
