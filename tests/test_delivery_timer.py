"""The delivery timer (workers/timer.lua through workers.timers.Timers) in a real Redis."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis as AsyncRedis

from core.keys import DEFAULT as KEYS
from core.webhooks import OutboxEvent
from tests.reference import MIDNIGHT
from workers.timers import BATCH, Timers


def _events(redis) -> list[OutboxEvent]:
    return [
        OutboxEvent.from_entry(i.decode(), {k.decode(): v.decode() for k, v in f.items()})
        for i, f in redis.xrange(KEYS.outbox)
    ]


def fire(redis_server, now: int) -> int:
    async def go() -> int:
        client = AsyncRedis.from_url(redis_server.url, decode_responses=True)
        try:
            return await Timers(client, KEYS, 1000).fire_due(now)
        finally:
            await client.aclose()

    return asyncio.run(go())


@pytest.fixture
def arm(redis):
    def arm(message_id: str, deadline: int, provider: str = "verihubs") -> None:
        redis.zadd(KEYS.timers, {f"{provider}:{message_id}": deadline})

    return arm


def _apply(store, message_id: str, *codes: int) -> None:
    from core.events import Event

    for n, code in enumerate(codes):
        e = Event("verihubs", "whatsapp-otp", message_id, code, MIDNIGHT + n, MIDNIGHT + n)
        store.apply(f"{message_id}-{code}-{n}", [e])


def test_a_timer_fires_once_and_only_for_a_message_still_waiting(
    redis, redis_server, store, arm, reader
):
    _apply(store, "waiting", 0, 1)  # requested, sent
    _apply(store, "delivered", 1, 2)
    _apply(store, "failed", 1, 6)
    for mid in ("waiting", "delivered", "failed", "expired"):
        arm(mid, MIDNIGHT + 30_000)
    assert fire(redis_server, MIDNIGHT + 29_999) == 0
    assert fire(redis_server, MIDNIGHT + 30_000) == 1
    assert fire(redis_server, MIDNIGHT + 90_000) == 0  # taken once: never again
    (event,) = _events(redis)
    assert (event.type, event.message_id, event.state, event.previous_state) == (
        "message.delivery_timeout",
        "waiting",
        "sent",
        "sent",
    )
    assert event.at_ms == MIDNIGHT + 30_000 and event.billable
    assert redis.zcard(KEYS.timers) == 0
    counters = reader.counters()
    assert counters["delivery_timeout|verihubs|whatsapp-otp"] == 1


def test_many_due_timers_are_taken_in_batches(redis, redis_server, store, arm):
    count = BATCH + 7
    for i in range(count):
        redis.hset(KEYS.message("verihubs", f"m{i}"), mapping={"p": "whatsapp-otp", "m": 2})
        arm(f"m{i}", MIDNIGHT + i)
    assert fire(redis_server, MIDNIGHT + count) == count
    assert len(_events(redis)) == count
    assert {e.sequence for e in _events(redis)} == {1}
