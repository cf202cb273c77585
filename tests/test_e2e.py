"""End to end over real HTTP: uvicorn + RQ worker processes + a durable private Redis."""

from __future__ import annotations

import asyncio
import threading

import httpx2 as httpx
import pytest
from redis import Redis

from core.embedded import RedisServer
from tests.samples import verihubs_params, verihubs_url
from tests.support import ADMIN, ADMIN_TOKEN, CALLBACK_TOKEN, QUEUE
from tools.stack import Stack, wait_until

OTP = verihubs_url("whatsapp-otp")


@pytest.fixture
def durable_redis(tmp_path):
    server = RedisServer(tmp_path / "redis", durable=True).start()
    yield server
    server.stop(kill=True)


@pytest.fixture
def stack(durable_redis, tmp_path):
    stack = Stack(
        durable_redis.url, tmp_path, CALLBACK_TOKEN=CALLBACK_TOKEN, ADMIN_TOKEN=ADMIN_TOKEN,
        REDIS_TIMEOUT="0.3", LOG_LEVEL="warning", JOB_TIMEOUT="4", WORKER_MAINTENANCE_INTERVAL="1",
    )  # fmt: skip
    stack.start_web()
    stack.start_worker()
    yield stack
    stack.stop()


def message(stack: Stack, session_id: str) -> dict | None:
    response = httpx.get(f"{stack.url}/messages/verihubs/{session_id}", headers=ADMIN)
    return response.json() if response.status_code == 200 else None


async def send_all(url: str, callbacks: list[tuple[str, int]]) -> list[int]:
    async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=32)) as client:
        responses = await asyncio.gather(
            *(client.get(OTP, params=verihubs_params(s, c)) for s, c in callbacks)
        )
    return [r.status_code for r in responses]


def test_concurrent_callbacks_reach_state_billing_and_metrics(stack, durable_redis):
    # 200 messages, each requested -> sent -> delivered, sent concurrently in shuffled order.
    callbacks = [(f"sess-{i:04d}", code) for i in range(200) for code in (2, 0, 1)]
    callbacks += [("fail-1", 0), ("fail-1", 6), ("both-1", 6), ("both-1", 2)]
    assert set(asyncio.run(send_all(stack.url, callbacks))) == {200}
    # Group commit: fewer jobs than callbacks were written under concurrency.
    wait_until(lambda: (message(stack, "sess-0199") or {}).get("state") == "delivered")
    wait_until(lambda: Redis.from_url(durable_redis.url).llen(QUEUE) == 0)
    assert message(stack, "fail-1")["state"] == "failed"
    assert message(stack, "fail-1")["billable"] is False
    assert message(stack, "both-1")["anomalies"] == {"conflict": 1}
    days = httpx.get(f"{stack.url}/billing", headers=ADMIN).json()["days"]
    assert sum(d["billable"] for d in days) == 201
    metrics = httpx.get(f"{stack.url}/metrics/shared").text
    assert (
        'otp_callbacks_received_total{product="whatsapp-otp",provider="verihubs",status="delivered"} 201.0'
        in metrics
    )
    assert 'otp_messages_conflict_total{product="whatsapp-otp",provider="verihubs"} 1.0' in metrics


def test_redis_outage_gives_503_and_loses_nothing_answered_200(stack, durable_redis):
    answered: dict[str, int] = {}
    stop = threading.Event()

    def sender() -> None:
        with httpx.Client(base_url=stack.url, timeout=5) as client:
            i = 0
            while not stop.is_set():
                sid = f"out-{i:05d}"
                answered[sid] = client.get(OTP, params=verihubs_params(sid, 1)).status_code
                i += 1

    thread = threading.Thread(target=sender)
    thread.start()
    wait_until(lambda: len(answered) > 50, what="traffic")
    durable_redis.stop(kill=True)  # SIGKILL: no chance to flush anything at exit
    wait_until(lambda: 503 in answered.values(), what="503 while Redis is down")
    durable_redis.start()
    wait_until(lambda: list(answered.values())[-1] == 200, what="recovery")
    count = len(answered)
    wait_until(lambda: len(answered) > count + 50, what="traffic after recovery")
    stop.set()
    thread.join()

    ok = [sid for sid, code in answered.items() if code == 200]
    assert set(answered.values()) <= {200, 503}
    redis = Redis.from_url(durable_redis.url)

    def missing() -> list[str]:
        return [sid for sid in ok if not redis.exists(f"otp:m:verihubs:{sid}")]

    wait_until(lambda: redis.llen(QUEUE) == 0, what="worker drains the queue")
    # A batch caught mid-flight by the outage is retried by RQ's maintenance: once its
    # heartbeat lapses (JOB_TIMEOUT, 4 s here, + 10 s grace) if it had started, or after
    # RQ's fixed one minute if the outage hit between dequeue and start.
    wait_until(lambda: not missing(), timeout=90, what="every accepted callback applied")
    assert len(ok) > 100
