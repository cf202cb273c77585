"""The forwarder as a real process, delivering the outbox to a real subscriber over HTTP that
verifies every signature with the `standardwebhooks` library."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from core.forwarding import Endpoint
from core.keys import DEFAULT as KEYS
from core.outbox import endpoint_states
from tests.subscriber import (
    SECRET,
    Subscriber,
    add_event,
    decoded,
    forwarder,
    outbox_ids,
    start_forwarder,
    stop,
)
from tests.support import ROOT, metric
from tools.stack import wait_until


@pytest.fixture
def subscriber():
    sub = Subscriber().up()
    yield sub
    sub.down()


def _attempts(redis, result: str, endpoint: str = "0") -> int:
    return int(redis.hget(KEYS.counters, f"fwd_attempt|{endpoint}|{result}") or 0)


def test_every_event_arrives_signed_with_its_canonical_body(
    redis, redis_server, subscriber, tmp_path
):
    with forwarder(redis_server.url, tmp_path / "fwd.log", FORWARD_URL=subscriber.url):
        ids = [add_event(redis, f"m{i}", "sent", sequence=1) for i in range(30)]
        ids.append(add_event(redis, "m0", "delivered", previous="sent", sequence=2))
        wait_until(lambda: subscriber.ids() == set(ids), what="every event delivered")
        # Counted in the transaction that settles the attempt, just after the answer.
        wait_until(lambda: _attempts(redis, "ok") == len(ids), what="attempts counted")
    assert subscriber.bad_signatures == 0
    last = next(r for r in subscriber.received if r.id == ids[-1])
    assert decoded(last) == {
        "id": ids[-1],
        "type": "message.delivered",
        "timestamp": "2024-11-30T20:53:20.000+00:00",
        "data": {
            "provider": "verihubs",
            "product": "whatsapp-otp",
            "message_id": "m0",
            "previous_state": "sent",
            "state": "delivered",
            "billable": True,
            "sequence": 2,
        },
    }
    first = next(r for r in subscriber.received if r.id == ids[0])
    assert decoded(first)["data"]["previous_state"] is None


def test_subscriber_down_then_up_gets_every_event_duplicates_only_by_id(
    redis, redis_server, subscriber, tmp_path
):
    subscriber.down()
    with forwarder(redis_server.url, tmp_path / "fwd.log", FORWARD_URL=subscriber.url):
        ids = [add_event(redis, f"m{i}", "sent") for i in range(20)]
        wait_until(lambda: _attempts(redis, "error") >= 40, what="failed attempts")
        assert endpoint_states(redis, KEYS)[0].backlog == 20
        subscriber.up()
        wait_until(lambda: subscriber.ids() == set(ids), what="every event after the outage")
        wait_until(lambda: endpoint_states(redis, KEYS)[0].backlog == 0, what="backlog drained")
        # What every endpoint has taken leaves the outbox (the retries held their bodies).
        wait_until(lambda: redis.xlen(KEYS.outbox) == 0, what="outbox trimmed")
    assert all(len(bodies) == 1 for bodies in subscriber.copies().values())
    assert subscriber.bad_signatures == 0


def test_first_retry_comes_within_seconds(redis, redis_server, subscriber, tmp_path):
    subscriber.status = 503
    env = {"FORWARD_URL": subscriber.url, "FORWARD_FIRST_RETRY": "2"}
    with forwarder(redis_server.url, tmp_path / "fwd.log", **env):
        event = add_event(redis, "m", "sent")
        wait_until(lambda: _attempts(redis, "http_5xx") == 1, what="first attempt")
        subscriber.status = 200
        started = time.monotonic()
        wait_until(lambda: subscriber.ids() == {event}, timeout=10, what="the retry")
    assert time.monotonic() - started < 4


def test_a_dead_endpoint_never_delays_another(redis, redis_server, subscriber, tmp_path):
    """Endpoint 0 takes every request and never answers; endpoint 1 gets each event at once."""
    stalled = Subscriber(delay=30).up()
    env = {"FORWARD_URL": f"{stalled.url},{subscriber.url}", "FORWARD_TIMEOUT": "2"}
    try:
        with forwarder(redis_server.url, tmp_path / "fwd.log", **env):
            for i in range(40):
                event = add_event(redis, f"m{i}", "sent")
                wait_until(lambda e=event: e in subscriber.ids(), timeout=1.5, what=f"event {i}")
            wait_until(lambda: _attempts(redis, "timeout", "0") >= 8, what="timeouts at 0")
            assert endpoint_states(redis, KEYS)[0].backlog == 40
    finally:
        stalled.down()


def test_a_healthy_endpoint_keeps_up_with_a_steady_stream_while_another_fails(
    redis, redis_server, subscriber, tmp_path
):
    """250 events/s for 15 s; endpoint 1 answers 503 to every one (each retried with
    backoff); endpoint 0 answers at once, but one request in 50 after 0.25 s. Endpoint 0
    stays within a second of the stream and has everything at once after it ends (it fell
    thousands behind when each batch of attempts waited for its slowest answer)."""
    subscriber.slow_every, subscriber.slow_delay = 50, 0.25
    failing = Subscriber(status=503).up()
    rate, seconds = 250, 15
    env = {"FORWARD_URL": f"{subscriber.url},{failing.url}", "FORWARD_FIRST_RETRY": "2"}
    try:
        with forwarder(redis_server.url, tmp_path / "fwd.log", **env):
            ids, worst, started = [], 0, time.monotonic()
            next_sample = started
            while (elapsed := time.monotonic() - started) < seconds:
                while len(ids) < elapsed * rate:
                    ids.append(add_event(redis, f"m{len(ids)}", "sent"))
                if time.monotonic() >= next_sample:
                    worst = max(worst, endpoint_states(redis, KEYS)[0].backlog)
                    next_sample += 0.5
                time.sleep(0.01)
            assert worst < rate, f"endpoint 0 fell {worst} events behind"
            wait_until(lambda: subscriber.ids() == set(ids), timeout=3, what="all at endpoint 0")
            assert endpoint_states(redis, KEYS)[0].backlog == 0
            assert _attempts(redis, "http_5xx", "1") >= len(ids)  # failing all along
    finally:
        failing.down()
    assert failing.received == []


def test_a_forwarder_killed_mid_delivery_loses_nothing(redis, redis_server, subscriber, tmp_path):
    """SIGKILLed while its requests are in flight: another forwarder takes them over."""
    subscriber.delay = 0.8
    env = {"FORWARD_URL": subscriber.url, "FORWARD_TIMEOUT": "1"}
    first = start_forwarder(redis_server.url, tmp_path / "fwd1.log", **env)
    try:
        ids = [add_event(redis, f"m{i}", "sent") for i in range(8)]
        wait_until(lambda: subscriber.requests >= 1, what="requests in flight")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=5)
    finally:
        stop(first)
    subscriber.delay = 0
    with forwarder(redis_server.url, tmp_path / "fwd2.log", **env):
        wait_until(lambda: subscriber.ids() == set(ids), timeout=30, what="taken over")
    assert all(len(bodies) == 1 for bodies in subscriber.copies().values())


def test_exhausted_events_are_kept_then_replayed(
    redis, redis_server, subscriber, tmp_path, app_client
):
    subscriber.status = 500
    env = {"FORWARD_URL": subscriber.url, "FORWARD_RETRY_WINDOW": "1"}
    with forwarder(redis_server.url, tmp_path / "fwd.log", **env):
        ids = [add_event(redis, f"m{i}", "failed") for i in range(5)]
        wait_until(lambda: endpoint_states(redis, KEYS)[0].dead == 5, what="dead events")
        client = app_client()
        assert metric(client, "otp_forward_dead_events", endpoint="0") == 5
        assert metric(client, "otp_forward_backlog_events", endpoint="0") == 0
        tries = metric(client, "otp_forward_attempts_total", endpoint="0", result="http_5xx")
        assert tries >= 10  # every attempt counted: a first one and retries within the second
        assert metric(client, "otp_forward_latency_seconds_count", endpoint="0") == tries
        subscriber.status = 200
        replay = subprocess.run(
            [sys.executable, "-m", "workers.forward", "replay"],
            cwd=ROOT,
            env={
                "REDIS_URL": redis_server.url,
                "FORWARD_SECRET": SECRET,
                **env,
                "FORWARD_ALLOW_INSECURE": "true",
                "PATH": "/usr/bin:/bin",
            },
            capture_output=True,
            text=True,
            check=True,
        )
        assert "replayed 5 dead events" in replay.stdout
        wait_until(lambda: subscriber.ids() == set(ids), what="replayed events delivered")
        wait_until(lambda: endpoint_states(redis, KEYS)[0].dead == 0, what="dead set empty")
        # Released by the running forwarder, after the dead set empties.
        held = KEYS.forward_held(endpoint_group(subscriber.url))
        wait_until(lambda: redis.hlen(held) == 0, what="bodies released once delivered")


def endpoint_group(url: str) -> str:
    return Endpoint(0, url).group


def test_filters_pick_the_events_an_endpoint_gets(redis, redis_server, subscriber, tmp_path):
    env = {
        "FORWARD_URL": subscriber.url,
        "FORWARD_EVENTS": "message.failed,message.delivery_timeout",
        "FORWARD_PRODUCTS": "whatsapp-otp",
    }
    with forwarder(redis_server.url, tmp_path / "fwd.log", **env):
        add_event(redis, "a", "sent")
        failed = add_event(redis, "a", "failed", previous="sent", sequence=2)
        add_event(redis, "b", "failed", product="whatsapp-message")
        timeout = add_event(redis, "c", "sent", previous="sent", kind="timeout")
        last = add_event(redis, "d", "delivered")
        wait_until(lambda: endpoint_states(redis, KEYS)[0].backlog == 0, what="all read")
        wait_until(
            lambda: redis.xpending(KEYS.outbox, endpoint_group(subscriber.url))["pending"] == 0,
            what="acked",
        )
    assert subscriber.ids() == {failed, timeout}
    assert last in outbox_ids(redis)


def test_sigterm_stops_it_at_once_even_mid_request(redis, redis_server, tmp_path):
    stalled = Subscriber(delay=30).up()
    try:
        env = {"FORWARD_URL": stalled.url, "FORWARD_TIMEOUT": "20"}
        with forwarder(redis_server.url, tmp_path / "fwd.log", **env) as process:
            add_event(redis, "m", "sent")
            wait_until(lambda: stalled.requests == 1, what="a request in flight")
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=5) == 0
            assert time.monotonic() - started < 2
    finally:
        stalled.down()


def test_without_forward_url_it_sends_nothing_and_stays_up(redis, redis_server, tmp_path):
    with forwarder(redis_server.url, tmp_path / "fwd.log") as process:
        add_event(redis, "m", "sent")
        time.sleep(1.5)
        assert process.poll() is None  # honcho would stop every process if this one left
        assert redis.xinfo_groups(KEYS.outbox) == []
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    assert "FORWARD_URL unset" in (tmp_path / "fwd.log").read_text()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.com/x", "not https"),
        ("https://127.0.0.1/x", "private or loopback"),
        ("https://[::1]/x", "private or loopback"),
        ("https://169.254.169.254/latest", "private or loopback"),
        ("https://localhost/x", "no public address"),
    ],
)
def test_start_up_refuses_insecure_endpoints(redis_server, tmp_path, url, why):
    env = {"FORWARD_URL": url, "FORWARD_ALLOW_INSECURE": "false"}
    with forwarder(redis_server.url, tmp_path / "fwd.log", ready=False, **env) as process:
        assert process.wait(timeout=10) != 0
    assert why in (tmp_path / "fwd.log").read_text()


def test_allowing_insecure_endpoints_is_logged(redis_server, subscriber, tmp_path):
    with forwarder(redis_server.url, tmp_path / "fwd.log", FORWARD_URL=subscriber.url) as p:
        wait_until(lambda: b"FORWARD_ALLOW_INSECURE" in (tmp_path / "fwd.log").read_bytes())
        assert p.poll() is None
    line = next(
        line for line in (tmp_path / "fwd.log").read_text().splitlines() if "INSECURE" in line
    )
    assert '"level":"warning"' in line
