"""The receiver in-process (Starlette TestClient) against a real Redis."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from receiver.app import create_app
from tests.samples import verihubs_params, verihubs_url
from tests.support import ADMIN, CALLBACK_TOKEN, QUEUE, make_settings, metric, run_jobs

OTP = verihubs_url("whatsapp-otp")


@pytest.fixture
def client(settings, store):
    with TestClient(create_app(settings, CollectorRegistry())) as client:
        yield client


def test_callback_is_stored_applied_and_readable(client, redis, settings):
    assert client.get(OTP, params=verihubs_params("s-1", 1)).status_code == 200
    assert client.post(OTP, params=verihubs_params("s-1", 2)).status_code == 200
    run_jobs(redis, settings)
    body = client.get("/messages/verihubs/s-1", headers=ADMIN).json()
    assert body["state"] == "delivered"
    assert [s["status"] for s in body["statuses"]] == ["sent", "delivered"]
    assert body["billable"] is True


@pytest.mark.parametrize(
    ("params", "reason", "message"),
    [
        ({"status": "1"}, "missing_session_id", "session_id is required"),
        ({"session_id": "", "status": "1"}, "invalid_session_id", "session_id is empty"),
        ({"session_id": "a" * 129, "status": "1"}, "invalid_session_id", "longer than 128"),
        ({"session_id": "a b<script>", "status": "1"}, "invalid_session_id", "characters outside"),
        ({"session_id": "s"}, "missing_status", "status is required"),
        ({"session_id": "s", "status": "two"}, "invalid_status", "must be an integer"),
        ({"session_id": "s", "status": "1.5"}, "invalid_status", "must be an integer"),
        ({"session_id": "s", "status": "-1"}, "invalid_status", "between 0 and"),
        ({"session_id": "s", "status": "9" * 40}, "invalid_status", "must be an integer"),
    ],
)
def test_malformed_callbacks_get_a_clear_400_and_are_counted(
    client, redis, params, reason, message
):
    response = client.get(OTP, params=params)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert redis.llen(QUEUE) == 0
    assert metric(client, "otp_callbacks_rejected_total", reason=reason) == 1


def test_wrong_token_is_404_and_stores_nothing(client, redis):
    response = client.get(verihubs_url(token="wrong"), params=verihubs_params("s", 1))
    assert response.status_code == 404
    assert response.json() == {"error": "not found"}
    assert redis.llen(QUEUE) == 0
    assert metric(client, "otp_callbacks_rejected_total", reason="bad_token") == 1


def test_sms_otp_uses_its_own_code_and_billing_tables(client, redis, settings):
    sms = verihubs_url("sms-otp")
    for code in ("0", "7"):  # requested, then undelivered: charged for SMS
        assert client.get(sms, params=verihubs_params("sms-1", code)).status_code == 200
    client.get(sms, params=verihubs_params("sms-2", 0))
    client.get(sms, params=verihubs_params("sms-2", 4))  # failed: free
    run_jobs(redis, settings)
    first = client.get("/messages/verihubs/sms-1", headers=ADMIN).json()
    second = client.get("/messages/verihubs/sms-2", headers=ADMIN).json()
    assert (first["state"], first["billable"]) == ("undelivered", True)
    assert (second["state"], second["billable"]) == ("failed", False)
    rows = client.get("/billing", headers=ADMIN).json()["days"]
    assert [(r["product"], r["billable"]) for r in rows] == [("sms-otp", 1)]


def test_unknown_product_is_404(client):
    response = client.get(verihubs_url("voice-otp"), params=verihubs_params("s", 1))
    assert response.status_code == 404
    assert "unknown product" in response.json()["error"]


def test_callbacks_are_closed_without_a_token(redis, redis_server):
    settings = make_settings(redis_server.url, CALLBACK_TOKEN="")
    with TestClient(create_app(_without_token(settings), CollectorRegistry())) as client:
        assert client.get(OTP, params=verihubs_params("s", 1)).status_code == 404


def test_body_over_the_limit_is_413(redis, redis_server, store):
    settings = make_settings(redis_server.url, MAX_BODY_BYTES="16384")
    with TestClient(create_app(settings, CollectorRegistry())) as client:
        response = client.post(
            OTP,
            content=b"session_id=s&status=1&pad=" + b"x" * 20_000,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 413
    assert redis.llen(QUEUE) == 0


def test_post_with_form_or_json_body_is_accepted(client, redis, settings):
    assert client.post(OTP, data={"session_id": "f-1", "status": "0"}).status_code == 200
    assert client.post(OTP, json={"session_id": "j-1", "status": 3}).status_code == 200
    assert (
        client.post(OTP, content=b"[1,2]", headers={"content-type": "application/json"}).status_code
        == 400
    )
    run_jobs(redis, settings)
    assert client.get("/messages/verihubs/j-1", headers=ADMIN).json()["state"] == "read"


def test_unknown_status_code_is_accepted_and_counted(client, redis, settings):
    assert client.get(OTP, params=verihubs_params("u-1", 77)).status_code == 200
    run_jobs(redis, settings)
    assert metric(client, "otp_callbacks_unknown_total", product="whatsapp-otp") == 1
    assert metric(client, "otp_callbacks_received_total", status="unknown") == 1


def test_duplicates_are_answered_200(client, redis, settings):
    for _ in range(3):
        assert client.get(OTP, params=verihubs_params("d-1", 2)).status_code == 200
    run_jobs(redis, settings)
    assert metric(client, "otp_callbacks_duplicate_total") == 2


def test_redis_down_gives_503_with_retry_after(redis_server):
    from core.embedded import free_port

    settings = make_settings(f"redis://127.0.0.1:{free_port()}/0")
    with TestClient(create_app(settings, CollectorRegistry())) as client:
        response = client.get(OTP, params=verihubs_params("s", 1))
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert "unavailable" in response.json()["error"]
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200
        metrics = client.get("/metrics/shared")
        assert metrics.status_code == 200
        assert "otp_redis_up 0.0" in metrics.text
        assert "otp_callbacks_received_total" not in metrics.text


def test_backlog_over_its_bound_gives_503(redis, redis_server, store):
    settings = make_settings(redis_server.url, MAX_BACKLOG="2")
    with TestClient(create_app(settings, CollectorRegistry())) as client:
        codes = [client.get(OTP, params=verihubs_params(f"b{i}", 1)).status_code for i in range(5)]
        assert codes == [200, 200, 503, 503, 503]
        assert redis.llen(QUEUE) == 2
        assert metric(client, "otp_callbacks_rejected_total", reason="backlog_full") == 3


def test_admin_endpoints_need_the_token(client):
    assert client.get("/messages/verihubs/x").status_code == 401
    assert client.get("/billing", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/messages/verihubs/x", headers=ADMIN).status_code == 404


def test_billing_as_json_and_csv(client, redis, settings):
    for sid, code in [("b-1", "2"), ("b-2", "0"), ("b-2", "6"), ("b-3", "4")]:
        client.get(OTP, params=verihubs_params(sid, code))
    client.get(
        verihubs_url("whatsapp-message"),
        params=verihubs_params("w", 1),
    )
    run_jobs(redis, settings)
    body = client.get("/billing", headers=ADMIN).json()
    rows = {(d["provider"], d["product"]): d["billable"] for d in body["days"]}
    assert rows == {("verihubs", "whatsapp-otp"): 2, ("verihubs", "whatsapp-message"): 1}
    csv = client.get("/billing", headers={**ADMIN, "Accept": "text/csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert lines[0] == "day,provider,product,billable" and len(lines) == 3
    assert client.get("/billing?from=2026-13-01", headers=ADMIN).status_code == 400
    assert client.get("/billing?from=2020-01-01&to=2026-01-01", headers=ADMIN).status_code == 400


def test_metrics_export_counters_in_prometheus_format(client, redis, settings):
    client.get(OTP, params=verihubs_params("p-1", 0))
    client.get(OTP, params=verihubs_params("p-1", 6))
    run_jobs(redis, settings)
    text = client.get("/metrics/shared").text
    assert 'otp_messages_started_total{product="whatsapp-otp",provider="verihubs"} 1.0' in text
    assert (
        'otp_messages_billable_reversed_total{product="whatsapp-otp",provider="verihubs"} 1.0'
        in text
    )
    assert (
        'otp_state_transitions_total{from="requested",product="whatsapp-otp",provider="verihubs",to="failed"} 1.0'
        in text
    )
    assert "p-1" not in text and CALLBACK_TOKEN not in text


def test_no_route_is_a_json_404(client):
    response = client.get("/nope")
    assert response.status_code == 404 and "error" in response.json()


def _without_token(settings):
    from dataclasses import replace

    return replace(settings, callback_tokens=())


def test_inputs_that_once_gave_500s_get_clear_refusals(client, redis):
    # Deeper than orjson's recursion limit (1024), within Verihubs' 16 KiB body limit.
    deep = client.post(OTP, content=b"[" * 10_000, headers={"content-type": "application/json"})
    assert deep.status_code == 400 and "not valid JSON" in deep.json()["error"]
    early = client.get("/billing", params={"to": "0001-01-01"}, headers=ADMIN)
    assert early.status_code == 200 and early.json()["from"] == "0001-01-01"
    head = client.head(OTP, params=verihubs_params("h-1", 1))
    assert head.status_code == 405
    assert redis.llen(QUEUE) == 0
    assert metric(client, "otp_callbacks_rejected_total", reason="invalid_json") == 1
    assert metric(client, "otp_callbacks_rejected_total", reason="method_not_allowed") == 1


def test_status_padded_with_separator_characters_is_read_not_a_500(client, redis, settings):
    # str.strip() removes \x1c-\x1f, which int() does not accept: the stripped value is read.
    response = client.get(OTP, params=verihubs_params("pad", "\x1c5"))
    assert response.status_code == 200
    run_jobs(redis, settings)
    assert client.get("/messages/verihubs/pad", headers=ADMIN).json()["state"] == "unverified"


def test_an_empty_admin_token_keeps_the_admin_api_closed(redis, redis_server, store):
    settings = make_settings(redis_server.url, ADMIN_TOKEN="")
    with TestClient(create_app(settings, CollectorRegistry())) as client:
        for header in ({"Authorization": "Bearer "}, {"Authorization": "Bearer"}, {}):
            assert client.get("/billing", headers=header).status_code == 403


def test_json_depth_and_trailing_slashes_are_refused_plainly(client, redis):
    nested: object = []
    for _ in range(40):  # deeper than MAX_JSON_DEPTH (32)
        nested = [nested]
    nested = {"session_id": "n", "status": 1, "x": nested}
    assert client.post(OTP, json=nested).status_code == 400
    slash = client.get(OTP + "/", params=verihubs_params("s", 1), follow_redirects=False)
    assert slash.status_code == 404 and "location" not in slash.headers
    assert redis.llen(QUEUE) == 0
    assert metric(client, "otp_callbacks_rejected_total", reason="json_too_deep") == 1
    assert metric(client, "otp_callbacks_rejected_total", reason="no_such_endpoint") == 1
