"""The outbox follows the state: one event per change of a message's canonical state,
recorded by apply.lua in the same atomic step, whatever order, repetition or replay; and the
delivery timer armed and disarmed by the same step (fired by timer.lua)."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis as AsyncRedis

from core.events import Event
from core.keys import DEFAULT as KEYS
from core.keys import MessageField
from core.webhooks import OutboxEvent
from tests.reference import MIDNIGHT, PRODUCTS, event, reference
from tests.strategies import SLOW, callbacks, with_intruders
from tests.subscriber import SECRET, outbox
from tests.support import apply_shuffled, make_settings
from workers.store import Store
from workers.timers import Timers

# A deployment that forwards (without FORWARD_URL the scripts keep no outbox at all).
FORWARDING = {
    "FORWARD_URL": "http://127.0.0.1:9/events",
    "FORWARD_SECRET": SECRET,
    "FORWARD_ALLOW_INSECURE": "true",
}


@pytest.fixture
def settings(redis, redis_server):
    """conftest's `store` and run_jobs' worker are built from these."""
    return make_settings(redis_server.url, **FORWARDING)


def _assert_events_follow_states(redis, events: list[Event]) -> None:
    counts, _, states = reference(events)
    by_message: dict[str, list[OutboxEvent]] = defaultdict(list)
    for e in outbox(redis):
        by_message[e.message_id].append(e)
    transitions = sum(v for k, v in counts.items() if k.startswith("transition|"))
    assert sum(len(v) for v in by_message.values()) == transitions
    for mid, chain in by_message.items():
        assert [e.sequence for e in chain] == list(range(1, len(chain) + 1))
        previous = None
        for e in chain:
            assert e.previous_state == previous and e.type == f"message.{e.state}"
            # The message's product is its first callback's (an intruder's, if it came first).
            assert (e.provider, e.product) == (chain[0].provider, chain[0].product)
            assert e.provider == PRODUCTS[mid][0]
            previous = e.state
        assert previous == states[mid]
    assert set(by_message) == {m for m, s in states.items() if s != "none"}


@SLOW
@given(with_intruders)
def test_one_event_per_state_change_event_by_event(redis, store, events):
    redis.flushall()
    for i, e in enumerate(events):
        store.apply(f"batch-{i}", [e])
    _assert_events_follow_states(redis, events)


@SLOW
@given(callbacks, st.randoms(use_true_random=False))
def test_events_follow_state_changes_whatever_the_order(redis, store, settings, events, rnd):
    """Shuffled, duplicated callbacks in random batches through RQ: the events still
    describe the state changes, once each (replayed batches: the test below)."""
    redis.flushall()
    apply_shuffled(redis, settings, events, rnd)
    # Whatever the order, the final state is the model's; the chain ends there.
    _assert_chain_ends_in_state(redis, events)


def _assert_chain_ends_in_state(redis, events: list[Event]) -> None:
    _, _, states = reference(events)
    last: dict[str, OutboxEvent] = {}
    for e in outbox(redis):
        if e.message_id in last:
            assert e.sequence == last[e.message_id].sequence + 1
            assert e.previous_state == last[e.message_id].state
        else:
            assert e.sequence == 1 and e.previous_state is None
        last[e.message_id] = e
    assert {m: e.state for m, e in last.items()} == {m: s for m, s in states.items() if s != "none"}


def test_a_replayed_batch_records_no_event_twice(redis, store):
    batch = [event("m0", 0), event("m0", 1), event("m0", 2), event("m1", 6), event("m0", 2)]
    store.apply("half", batch[:2])  # the worker died after two events
    store.apply("half", batch)  # the job retried: all of it
    store.apply("half", batch)  # and replayed
    assert [(e.message_id, e.state) for e in outbox(redis)] == [
        ("m0", "requested"),
        ("m0", "sent"),
        ("m0", "delivered"),
        ("m1", "failed"),
    ]


def test_duplicates_late_and_unknown_callbacks_record_nothing(redis, store):
    store.apply("a", [event("m0", 2)])
    store.apply("b", [event("m0", 2), event("m0", 1), event("m0", 42)])  # dup, late, unknown
    assert [e.state for e in outbox(redis)] == ["delivered"]


def test_the_outbox_is_bounded(redis, redis_server):
    store = Store.from_settings(
        redis, make_settings(redis_server.url, OUTBOX_MAX_EVENTS="100", **FORWARDING)
    )
    store.apply("many", [Event("verihubs", "whatsapp-otp", f"x{i}", 1, 1, 1) for i in range(2000)])
    assert redis.xlen(KEYS.outbox) < 300  # MAXLEN ~: trimmed by whole stream nodes


# The delivery timer --------------------------------------------------------------------------


def _timer_store(redis, redis_server, **env: str) -> Store:
    settings = make_settings(redis_server.url, DELIVERY_TIMEOUT="30", **{**FORWARDING, **env})
    return Store.from_settings(redis, settings)


def _callback(message_id: str, code: int, offset_ms: int = 0, product: str = "whatsapp-otp"):
    at = MIDNIGHT + offset_ms
    return Event("verihubs", product, message_id, code, at, at)


def fire(redis_server, now: int) -> int:
    async def go() -> int:
        client = AsyncRedis.from_url(redis_server.url, decode_responses=True)
        try:
            return await Timers(client, KEYS, 1000).fire_due(now)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_a_timer_fires_once_and_only_for_a_message_still_waiting(redis, redis_server, reader):
    store = _timer_store(redis, redis_server, DELIVERY_TIMEOUT_VERIHUBS_WHATSAPP_MESSAGE="0")
    store.apply("1", [_callback("waiting", 0), _callback("waiting", 1, 500)])
    store.apply("2", [_callback("delivered", 1), _callback("delivered", 2, 900)])
    store.apply("3", [_callback("failed", 1), _callback("failed", 6, 900)])
    store.apply("4", [_callback("verified", 4)])  # never waited: no timer
    store.apply("5", [_callback("off", 1, product="whatsapp-message")])  # its timeout is 0
    assert redis.zcard(KEYS.timers) == 1
    assert fire(redis_server, MIDNIGHT + 29_999) == 0
    assert fire(redis_server, MIDNIGHT + 30_000) == 1
    assert fire(redis_server, MIDNIGHT + 90_000) == 0  # taken once: never again
    store.apply("6", [_callback("waiting", 1, 700)])  # a duplicate re-arms nothing
    assert fire(redis_server, MIDNIGHT + 90_000) == 0
    timeouts = [e for e in outbox(redis) if e.type == "message.delivery_timeout"]
    assert [(e.message_id, e.state, e.at_ms, e.sequence) for e in timeouts] == [
        ("waiting", "sent", MIDNIGHT + 30_000, 3)
    ]
    assert reader.counters()["delivery_timeout|verihubs|whatsapp-otp"] == 1
    # Evidence that comes later produces its normal event afterwards.
    store.apply("7", [_callback("waiting", 2, 40_000)])
    last = outbox(redis)[-1]
    assert (last.type, last.previous_state, last.sequence) == ("message.delivered", "sent", 4)


def test_a_timer_of_an_expired_message_fires_nothing(redis, redis_server):
    store = _timer_store(redis, redis_server)
    store.apply("1", [_callback("gone", 1)])
    redis.delete(KEYS.message("verihubs", "gone"))  # as MESSAGE_TTL would
    assert fire(redis_server, MIDNIGHT + 60_000) == 0
    assert redis.zcard(KEYS.timers) == 0


def test_without_forward_url_nothing_is_kept_in_the_outbox(redis, redis_server):
    """No endpoint: the outbox would only cost memory. The sequence still counts, so a
    message's numbers stay in order if forwarding is turned on later."""
    store = Store.from_settings(redis, make_settings(redis_server.url, DELIVERY_TIMEOUT="30"))
    store.apply("a", [event("m0", 1), event("m0", 2)])
    assert not redis.exists(KEYS.outbox)
    assert redis.hget(KEYS.message("verihubs", "m0"), MessageField.SEQUENCE) == b"2"
