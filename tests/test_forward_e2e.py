"""Events end to end with real processes: callbacks over HTTP to the receiver, RQ workers
applying them (one SIGKILLed mid-stream), the forwarder delivering to a real subscriber that
verifies every signature, and the delivery timer."""

from __future__ import annotations

import signal
import time

import httpx2 as httpx
import pytest

from tests.samples import verihubs_params, verihubs_url
from tests.subscriber import SECRET, Subscriber, forwarder, outbox
from tests.support import ADMIN, ADMIN_TOKEN, CALLBACK_TOKEN
from tools.stack import Stack, wait_until


@pytest.fixture
def subscriber():
    sub = Subscriber().up()
    yield sub
    sub.down()


def _stack(redis_server, tmp_path, subscriber: Subscriber, **env: str) -> Stack:
    """Web and workers of a deployment that forwards to `subscriber` (without FORWARD_URL
    the scripts keep no outbox)."""
    env = {"FORWARD_URL": subscriber.url, "FORWARD_SECRET": SECRET, **env}
    stack = Stack(
        redis_server.url, tmp_path, CALLBACK_TOKEN=CALLBACK_TOKEN, ADMIN_TOKEN=ADMIN_TOKEN,
        LOG_LEVEL="warning", JOB_TIMEOUT="2", WORKER_MAINTENANCE_INTERVAL="1",
        FORWARD_ALLOW_INSECURE="true", **env,
    )  # fmt: skip
    stack.start_web()
    return stack


def _send(stack: Stack, session: str, code: int) -> None:
    url = stack.url + verihubs_url("whatsapp-otp")
    response = httpx.get(url, params=verihubs_params(session, code), timeout=5)
    assert response.status_code == 200, response.text


def unique_events(subscriber: Subscriber) -> dict[str, dict]:
    return {r.id: r.event for r in subscriber.received}


def _state(stack: Stack, session: str) -> str | None:
    response = httpx.get(f"{stack.url}/messages/verihubs/{session}", headers=ADMIN, timeout=5)
    return response.json()["state"] if response.status_code == 200 else None


def test_a_worker_killed_between_apply_and_delivery_loses_no_event(
    redis, redis_server, subscriber, tmp_path
):
    stack = _stack(redis_server, tmp_path, subscriber)
    try:
        worker = stack.start_worker()
        sessions = [f"s{i}" for i in range(40)]
        for n, session in enumerate(sessions):
            for code in (0, 1, 2) if n % 2 == 0 else (0, 1):
                _send(stack, session, code)
            if n == 20:
                worker.send_signal(signal.SIGKILL)
                worker.wait(timeout=5)
                stack.start_worker()
        want = {s: "delivered" if n % 2 == 0 else "sent" for n, s in enumerate(sessions)}
        # A batch the killed worker held is retried after JOB_TIMEOUT + 10 s (longer on a
        # loaded machine: the wait ends as soon as every state is there).
        wait_until(
            lambda: {s: _state(stack, s) for s in sessions} == want, timeout=120, what="applied"
        )
        # What the workers recorded (the forwarder trims the outbox once it is delivered).
        recorded = outbox(redis)
        with forwarder(redis_server.url, tmp_path / "fwd.log", FORWARD_URL=subscriber.url):
            wait_until(lambda: subscriber.ids() == {e.id for e in recorded}, what="all delivered")
    finally:
        stack.stop()
    last: dict[str, tuple[int, str]] = {}
    for event in sorted(recorded, key=lambda e: (e.message_id, e.sequence)):
        seq, state = last.get(event.message_id, (0, None))
        assert (event.sequence, event.previous_state) == (seq + 1, state)
        last[event.message_id] = (event.sequence, event.state)
    assert {m: s for m, (_, s) in last.items()} == want
    assert subscriber.bad_signatures == 0
    assert all(len(bodies) == 1 for bodies in subscriber.copies().values())


def test_timers_fire_once_and_only_for_undelivered_messages(
    redis, redis_server, subscriber, tmp_path
):
    stack = _stack(redis_server, tmp_path, subscriber, DELIVERY_TIMEOUT="2")
    env = {"FORWARD_URL": subscriber.url, "DELIVERY_TIMEOUT": "2"}
    try:
        stack.start_worker()
        first = forwarder(redis_server.url, tmp_path / "fwd1.log", **env)
        process = first.__enter__()
        for n in range(10):
            _send(stack, f"t{n}", 1)
            if n % 2 == 0:
                _send(stack, f"t{n}", 2)
        late = {f"t{n}" for n in range(10) if n % 2}

        def timeouts() -> list[str]:
            """Messages timed out, once per event id (a copy re-sent after a kill is one)."""
            unique = {r.id: r.event for r in subscriber.received}
            return sorted(
                e["data"]["message_id"]
                for e in unique.values()
                if e["type"] == "message.delivery_timeout"
            )

        wait_until(lambda: set(timeouts()) == late, timeout=20, what="timeouts")
        process.send_signal(signal.SIGKILL)
        first.__exit__(None, None, None)
        with forwarder(redis_server.url, tmp_path / "fwd2.log", **env):
            _send(stack, "t1", 2)  # evidence after the timeout: its normal event follows
            wait_until(
                lambda: any(
                    r.event["type"] == "message.delivered" and r.event["data"]["message_id"] == "t1"
                    for r in subscriber.received
                ),
                what="t1 delivered",
            )
            time.sleep(3)  # longer than the timeout: nothing fires twice
    finally:
        stack.stop()
    assert timeouts() == sorted(late)
    timeout_events = {
        i for i, e in unique_events(subscriber).items() if e["type"].endswith("timeout")
    }
    assert len(timeout_events) == len(late)  # one event id per message timed out
    unique = unique_events(subscriber)
    t1 = sorted(
        (e for e in unique.values() if e["data"]["message_id"] == "t1"),
        key=lambda e: e["data"]["sequence"],
    )
    assert [e["type"] for e in t1] == [
        "message.sent",
        "message.delivery_timeout",
        "message.delivered",
    ]
    assert redis.hget("otp:counters", "delivery_timeout|verihubs|whatsapp-otp") == b"5"
