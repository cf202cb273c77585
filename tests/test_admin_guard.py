"""Guessing the admin token is counted, logged with the client's address, and slowed: a
source that fails AUTH_FAILURES_PER_MINUTE times is refused 429 (its token not even
compared) until its minute is over. And admin reads take only a known provider and an id a
callback could have stored, and every refusal says what is wrong."""

from __future__ import annotations

import json

import httpx2 as httpx
from prometheus_client import CollectorRegistry
from starlette.requests import Request

from receiver.auth import Guard
from receiver.credentials import Tokens
from receiver.errors import Rejected
from tests.attacks import Attack, against_the_floor, callback_latency, near_the_floor
from tests.samples import JSON, verihubs_params, verihubs_url
from tests.support import ADMIN, ADMIN_TOKEN, CALLBACK_TOKEN, live_receiver, metric, run_jobs

WRONG = {"Authorization": "Bearer not-the-admin-token"}


# Counted, and slowed.


def test_admin_refusals_are_counted_by_reason(app_client):
    client = app_client()
    assert client.get("/billing").status_code == 401
    assert client.get("/messages/verihubs/m-1", headers=WRONG).status_code == 401
    assert client.get("/billing", headers=ADMIN).status_code == 200
    assert metric(client, "otp_admin_rejected_total", reason="bad_admin_token") == 2
    closed = app_client(ADMIN_TOKEN="")
    assert closed.get("/billing", headers=ADMIN).status_code == 403
    assert metric(closed, "otp_admin_rejected_total", reason="admin_closed") == 1


def test_a_source_that_keeps_failing_is_refused_429_then_let_back(app_client):
    client = app_client(("203.0.113.7", 5000), AUTH_FAILURES_PER_MINUTE="3")
    clock = FakeClock()
    client.app.state.ctx.guard.clock = clock
    assert [client.get("/billing", headers=WRONG).status_code for _ in range(3)] == [401] * 3
    throttled = client.get("/billing", headers=ADMIN)  # even the right token: not compared
    assert throttled.status_code == 429
    assert throttled.json() == {"error": "too many failed attempts from this address, retry later"}
    assert throttled.headers["retry-after"] == "60"
    clock.now += 45
    assert client.get("/billing", headers=ADMIN).headers["retry-after"] == "15"
    assert metric(client, "otp_admin_rejected_total", reason="throttled") == 2
    clock.now += 15  # the minute is over
    assert client.get("/billing", headers=ADMIN).status_code == 200


def test_throttling_is_per_source_and_a_success_clears_the_count(app_client):
    proxy = ("172.16.0.1", 40000)
    client = app_client(proxy, AUTH_FAILURES_PER_MINUTE="2", TRUSTED_PROXIES="172.16.0.1")
    attacker, operator = {"X-Forwarded-For": "198.51.100.9"}, {"X-Forwarded-For": "192.0.2.1"}
    for _ in range(2):
        assert client.get("/billing", headers={**WRONG, **attacker}).status_code == 401
    assert client.get("/billing", headers={**ADMIN, **attacker}).status_code == 429
    # Another client behind the same proxy is not the attacker.
    assert client.get("/billing", headers={**WRONG, **operator}).status_code == 401
    assert client.get("/billing", headers={**ADMIN, **operator}).status_code == 200
    assert client.get("/billing", headers={**WRONG, **operator}).status_code == 401
    assert client.get("/billing", headers={**ADMIN, **operator}).status_code == 200


def test_the_failure_counts_stay_bounded_and_ipv6_counts_per_64():
    guard = Guard(2, CollectorRegistry(), clock=FakeClock(), max_sources=100)
    tokens = Tokens.of(())  # closed: every request fails
    for i in range(1000):
        _refuse(guard, f"10.0.{i // 256}.{i % 256}", tokens)
    assert len(guard.failures) == 100
    for host in ("2001:db8::1", "2001:db8::2"):
        _refuse(guard, host, tokens)
    assert guard.failures["2001:db8::/64"][1] == 2
    assert _refuse(guard, "2001:db8::3", tokens).status_code == 429


def _refuse(guard: Guard, host: str, tokens: Tokens | None) -> Rejected:
    request = Request({"type": "http", "headers": [], "client": (host, 1)})
    try:
        guard.check_admin(request, tokens)
    except Rejected as refusal:
        return refusal
    raise AssertionError("accepted")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# Logged with the client's address, over the wire.


def test_every_refusal_logs_the_proxy_resolved_client_address(redis_server, capfd):
    env = {"CALLBACK_TOKEN": CALLBACK_TOKEN, "ADMIN_TOKEN": ADMIN_TOKEN}
    with live_receiver(redis_server.url, TRUSTED_PROXIES="127.0.0.1", **env) as url:
        guess = httpx.get(url + "/billing", headers={**WRONG, "X-Forwarded-For": "203.0.113.7"})
        wrong_token = httpx.get(
            url + verihubs_url(token="x" * 32),
            params=verihubs_params("s-1", 1),
            headers={"X-Forwarded-For": "198.51.100.4"},
        )
        accepted = httpx.get(url + verihubs_url(), params=verihubs_params("s-2", 1))
    assert (guess.status_code, wrong_token.status_code, accepted.status_code) == (401, 404, 200)
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if "{" in line]
    requests = {
        line.get("reason", line["status"]): line for line in lines if line["event"] == "request"
    }
    assert requests["bad_admin_token"]["client"] == "203.0.113.7"
    assert requests["bad_token"]["client"] == "198.51.100.4"
    assert "client" not in requests[200]  # only refusals name who was refused


# Admin reads: a known provider and a valid id; errors that say what is wrong.


def test_a_made_up_provider_does_not_show_another_providers_message(app_client, redis, settings):
    client = app_client()
    assert client.get(verihubs_url(), params=verihubs_params("a:b:c", 2)).status_code == 200
    run_jobs(redis, settings)
    assert client.get("/messages/verihubs/a:b:c", headers=ADMIN).status_code == 200
    # Its Redis key is otp:m:verihubs:a:b:c, as that of "verihubs:a" with the id "b:c".
    forged = client.get("/messages/verihubs:a/b:c", headers=ADMIN)
    assert forged.status_code == 404
    assert forged.json()["error"].startswith("unknown provider 'verihubs:a'")
    unknown = client.get("/messages/voice/x", headers=ADMIN)
    assert unknown.status_code == 404 and "unknown provider" in unknown.json()["error"]


def test_admin_reads_validate_the_id_as_callbacks_do(app_client):
    client = app_client()
    cases = {
        "x" * 129: "message_id is longer than 128 characters",
        "a%20b": "message_id has characters outside [A-Za-z0-9._:=+/-]",
        "a<b>": "message_id has characters outside [A-Za-z0-9._:=+/-]",
    }
    for message_id, error in cases.items():
        answer = client.get(f"/messages/verihubs/{message_id}", headers=ADMIN)
        assert (answer.status_code, answer.json()) == (400, {"error": error}), message_id
    missing = client.get("/messages/verihubs/never-seen", headers=ADMIN)
    assert missing.json() == {"error": "no callback seen for this message"}


def test_a_json_status_that_is_no_integer_says_so(app_client):
    client = app_client()
    for status in (1.5, True, [1], {"code": 1}, "one"):
        body = json.dumps({"session_id": "j-1", "status": status})
        answer = client.post(verihubs_url(), content=body, headers=JSON)
        assert answer.json() == {"error": "status must be an integer"}, status
    for body in ({"session_id": "j-1"}, {"session_id": "j-1", "status": None}):
        answer = client.post(verihubs_url(), content=json.dumps(body), headers=JSON)
        assert answer.json() == {"error": "status is required"}, body
    as_number = {"session_id": "j-1", "status": 2}
    assert client.post(verihubs_url(), json=as_number).status_code == 200


# Over the wire: guessing gets nowhere and does not slow a real callback.


def test_admin_token_guessing_is_throttled_over_the_wire(redis_server):
    env = {"CALLBACK_TOKEN": CALLBACK_TOKEN, "ADMIN_TOKEN": ADMIN_TOKEN}
    with live_receiver(redis_server.url, **env) as url:
        guessing = callback_latency(url, Attack("/billing", WRONG, clients=4))
        page = httpx.get(url + "/metrics").text
        blocked = httpx.get(url + "/billing", headers=ADMIN)
        # Throttled or not, guesses cost about what /healthz does.
        again, floor = against_the_floor(url, Attack("/billing", WRONG, clients=4))
    print(f"\n4 admin guessers: {guessing}")
    print(f"4 clients on /healthz: {floor}\n4 admin guessers (throttled): {again}")
    # Ten guesses a minute from an address, then 429 (before: 1,135 guesses/s, all compared).
    assert guessing.attacks[401] == 10 and set(guessing.attacks) == {401, 429}
    assert (blocked.status_code, set(guessing.callbacks)) == (429, {200})
    assert 'otp_admin_rejected_total{reason="bad_admin_token"} 10.0' in page
    assert f'otp_admin_rejected_total{{reason="throttled"}} {guessing.attacks[429]}.0' in page
    assert set(again.attacks) == {429}
    assert near_the_floor(again, floor), (again, floor)
