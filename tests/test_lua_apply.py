"""The Lua apply script agrees with the pure model, and stays idempotent, in a real Redis."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st
from redis.exceptions import ResponseError

from core import counters, keys
from core.events import Event
from core.model import Outcome
from tests.reference import (
    MIDNIGHT,
    PRODUCTS,
    UNKNOWN_CODE,
    billing_buckets,
    bucket,
    event,
    reference,
    stored,
)
from tests.strategies import SLOW, callbacks, with_intruders
from tests.support import apply_shuffled, billing_records
from workers.store import Store, Unflushed


@SLOW
@given(with_intruders)
def test_lua_agrees_with_the_model_event_by_event(redis, store, reader, events):
    redis.flushall()
    for i, e in enumerate(events):
        store.apply(f"batch-{i}", [e])
    assert stored(redis, reader) == reference(events)


@SLOW
@given(with_intruders, st.randoms(use_true_random=False))
def test_one_call_for_many_events_counts_as_a_call_for_each(redis, store, reader, events, rnd):
    """The script sums a call's counter and billing increments and writes them once: in any
    split into batches, applied together (calls span batches), exactly the model's figures."""
    redis.flushall()
    batches, start = [], 0
    while start < len(events):
        size = rnd.randint(1, 40)
        batches.append((f"batch-{start}", events[start : start + size]))
        start += size
    assert not any(isinstance(r, Exception) for r in store.apply_many(batches))
    assert stored(redis, reader) == reference(events)


def test_an_event_redis_refuses_fails_alone_and_the_calls_others_count(redis, store, reader):
    redis.set("otp:m:verihubs:broken", "not a hash")  # WRONGTYPE for the script's HMGET
    batch = [event("m0", 0), event("broken", 0), event("m1", 9), event("m0", 9)]
    (result,) = store.apply_many([("b", batch)])
    assert isinstance(result, ResponseError) and "WRONGTYPE" in str(result)
    redis.delete("otp:m:verihubs:broken")
    ids = ["m0", "m1", "broken"]
    assert stored(redis, reader, ids) == reference([batch[0], batch[2], batch[3]])
    # Retried, the refused event is applied and the others count nothing twice.
    assert store.apply("b", batch) == [None, Outcome.NEW, None, None]
    assert stored(redis, reader, ids) == reference(batch)


def test_counts_a_call_cannot_write_fail_every_batch_of_it(redis, store, reader):
    """Applied, but their summed counts refused: the batches fail (a retry would only replay
    them and pass with the counts missing)."""
    redis.set(keys.DEFAULT.counters, "not a hash")  # WRONGTYPE for the increments
    results = store.apply_many([("b1", [event("m0", 0)]), ("b2", [event("m1", 9)])])
    assert all(isinstance(r, Unflushed) and "WRONGTYPE" in str(r) for r in results)
    assert reader.message("verihubs", "m1").state == "blocked"  # applied all the same


@SLOW
@given(callbacks, st.randoms(use_true_random=False))
def test_worker_converges_for_any_order_and_repetition(redis, store, reader, settings, events, rnd):
    """Shuffled, duplicated callbacks in random batches, through RQ: same state and billing."""
    redis.flushall()
    copies = apply_shuffled(redis, settings, events, rnd)
    got_counts, got_billing, got_states = stored(redis, reader)
    want_counts, want_billing, want_states = reference(events)
    assert (got_billing, got_states) == (want_billing, want_states)
    for family in ("started", "conflict"):
        assert _family(got_counts, family) == _family(want_counts, family)
    net = _family(got_counts, "billable") - _family(got_counts, "billable_reversed")
    assert net == sum(want_billing.values())
    assert _family(got_counts, "received") == len(copies)


@SLOW
@given(callbacks, st.randoms(use_true_random=False))
def test_state_expiring_at_any_point_never_changes_billing(redis, store, reader, events, rnd):
    """Messages whose state expires between any two batches (their billing record stays)
    end with the billing, starts and states of a world where nothing expired."""
    redis.flushall()
    copies = events + rnd.sample(events, k=len(events) // 2)
    rnd.shuffle(copies)
    i = 0
    while i < len(copies):
        size = rnd.randint(1, 4)
        store.apply(f"b{i}", copies[i : i + size])
        i += size
        for mid in rnd.sample(sorted(PRODUCTS), k=rnd.randint(0, 3)):
            redis.delete(keys.DEFAULT.message(PRODUCTS[mid][0], mid))  # as MESSAGE_TTL would
    got_counts, got_billing, got_states = stored(redis, reader)
    want_counts, want_billing, want_states = reference(events)
    assert got_billing == want_billing
    assert got_states.items() <= want_states.items()
    assert _family(got_counts, "started") == _family(want_counts, "started")
    net = _family(got_counts, "billable") - _family(got_counts, "billable_reversed")
    assert net == sum(want_billing.values())


@SLOW
@given(callbacks, st.randoms(use_true_random=False))
def test_callbacks_of_another_product_change_nothing_in_any_order(
    redis, store, reader, events, rnd
):
    """Once a message has its product, callbacks naming another one, duplicated and mixed in
    anywhere, leave state and billing as the message's own callbacks alone leave them."""
    redis.flushall()
    firsts = list({e.message_id: e for e in reversed(events)}.values())
    store.apply("first", firsts)
    intruders = [event(e.message_id, e.code, e.billable, intruder=True) for e in events]
    rest = events + [i for i in intruders if i.product != PRODUCTS[i.message_id][1]] * 2
    rnd.shuffle(rest)
    for n, e in enumerate(rest):
        store.apply(f"b{n}", [e])
    _, got_billing, got_states = stored(redis, reader)
    _, want_billing, want_states = reference(firsts + events)
    assert (got_billing, got_states) == (want_billing, want_states)


@SLOW
@given(callbacks, st.randoms(use_true_random=False))
def test_the_index_holds_each_message_once_under_its_state_for_any_order(
    redis, settings, reader, events, rnd
):
    """Shuffled and repeated callbacks leave each message in exactly the set of its
    current state, scored by its earliest receipt."""
    redis.flushall()
    # The reference events are days old: a state that lives long keeps them indexed.
    store = Store(redis, 400 * 86_400, 60, 400 * 86_400, settings.queue_name)
    copies = events + rnd.sample(events, k=len(events) // 2)
    rnd.shuffle(copies)
    for i, e in enumerate(copies):
        store.apply(f"b{i}", [e])
    _, _, want = reference(events)
    got: dict[str, list[tuple[str, int]]] = {}
    for key in redis.scan_iter("otp:ix:*"):
        state = key.decode().rsplit(":", 1)[1]
        for member, score in redis.zrange(key, 0, -1, withscores=True):
            got.setdefault(member.decode(), []).append((state, int(score)))
    first = {}
    for e in events:
        first[e.message_id] = min(first.get(e.message_id, e.received_ms), e.received_ms)
    assert got == {m: [(s, first[m])] for m, s in want.items()}
    assert set(want) <= set(PRODUCTS)


def _family(values: Counter[str], key: str) -> int:
    return sum(v for k, v in values.items() if k.startswith(key + "|"))


def test_a_batch_applied_twice_counts_once(redis, store, reader):
    batch = [event("m0", 0), event("m0", 2), event("m0", 2), event("m1", 9)]
    first = store.apply("same-batch", batch)

    def snapshot():
        m0 = redis.hgetall("otp:m:verihubs:m0")
        return (
            reader.counters(),
            billing_buckets(redis),
            m0,
            billing_records(redis, "verihubs", "m0"),
        )

    before = snapshot()
    assert store.apply("same-batch", batch) == [None] * 4
    assert snapshot() == before
    assert [o.value for o in first] == ["new", "new", "duplicate", "new"]


def test_a_partly_applied_batch_finishes_without_double_counting(redis, store, reader):
    batch = [event(random.choice(sorted(PRODUCTS)), random.randrange(14)) for _ in range(50)]
    store.apply("half", batch[:20])  # as if the worker died after 20 events
    store.apply("half", batch)  # the retried job replays all of it
    assert stored(redis, reader) == reference(batch)


def test_latency_is_observed_once_whatever_the_order(redis, store, reader):
    t = MIDNIGHT
    delivered = Event("verihubs", "whatsapp-otp", "x", 2, t + 1500, t + 1500)
    sent = Event("verihubs", "whatsapp-otp", "x", 1, t, t)
    verified = Event("verihubs", "whatsapp-otp", "x", 4, t + 45_000, t + 45_000)
    store.apply("b1", [delivered, verified])
    store.apply("b2", [sent, sent])
    values = reader.counters()
    lat = counters.LATENCIES
    bucket = counters.LATENCY_BUCKETS.index(2)  # 1.5 s falls in le=2
    assert values[f"{lat['delivery'].key}|verihubs|whatsapp-otp|b{bucket}"] == 1
    assert values[f"{lat['delivery'].key}|verihubs|whatsapp-otp|sum"] == 1500
    assert values[f"{lat['verify'].key}|verihubs|whatsapp-otp|sum"] == 45_000
    assert not any(k.startswith(lat["read"].key) for k in values)


def test_batch_size_is_observed_once_per_batch(redis, store, reader):
    batch = [event("m0", c) for c in range(5)]
    store.apply("b", batch)
    store.apply("b", batch)  # replayed
    values = reader.counters()
    assert values["batch|sum"] == 5
    assert values[f"batch|b{counters.BATCH_BUCKETS.index(8)}"] == 1


def test_unknown_code_is_recorded_and_changes_no_state(redis, store, reader):
    store.apply("b", [event("m0", 1), event("m0", UNKNOWN_CODE)])
    view = reader.message("verihubs", "m0")
    assert view.state == "sent"
    assert [u.code for u in view.unknown] == [UNKNOWN_CODE]
    assert reader.counters()["unknown|verihubs|whatsapp-otp"] == 1


def test_message_state_expires_but_billing_survives(redis, store):
    store.apply("b", [event("m0", 2)])
    ttl = redis.pttl("otp:m:verihubs:m0")
    assert 0 < ttl <= store.message_ttl_ms
    ((record, _),) = billing_records(redis, "verihubs", "m0")
    # Its generation's hashes expire together, a horizon after the generation ends.
    assert store.billing_horizon_ms < redis.pttl(record)
    assert redis.pttl(record) <= store.billing_horizon_ms + keys.RECORD_GENERATION_MS
    assert all(redis.ttl(key) == -1 for key in redis.scan_iter(f"{keys.DEFAULT.billing}:*"))


def test_apply_survives_a_flushed_script_cache(redis, store, reader):
    store.apply("b1", [event("m0", 1)])
    redis.script_flush()  # as after a Redis restart
    store.apply("b2", [event("m0", 2)])
    assert reader.message("verihubs", "m0").state == "delivered"


def test_copies_with_different_times_converge_on_the_earliest(redis, store, reader):
    """Verihubs and Twilio send no time: copies of one status carry their receipt times."""
    before, after = MIDNIGHT - 1000, MIDNIGHT + 1000
    outcomes = {}
    for order in ((before, after), (after, before)):
        redis.flushall()
        for i, at in enumerate(order):
            store.apply(f"b{i}", [Event("verihubs", "whatsapp-otp", "t", 0, at, at)])
            store.apply(f"u{i}", [Event("verihubs", "whatsapp-otp", "t", UNKNOWN_CODE, at, at)])
        view = reader.message("verihubs", "t")
        outcomes[order] = (view.first_seen, view.statuses, view.unknown, billing_buckets(redis))
    assert outcomes[(before, after)] == outcomes[(after, before)]
    assert list(outcomes[(before, after)][3]) == [bucket(before, "verihubs", "whatsapp-otp")]


def test_the_job_import_string_names_the_workers_job():
    """The receiver enqueues by import string; it must resolve to the function RQ runs."""
    from rq.utils import import_attribute

    from core.events import APPLY_BATCH
    from workers.jobs import apply_batch

    assert import_attribute(APPLY_BATCH) is apply_batch


def test_a_message_keeps_at_most_16_unknown_codes_and_counts_the_rest(redis, store, reader):
    store.apply("b", [event("m0", 1)] + [event("m0", 100 + n) for n in range(20)])
    store.apply("again", [event("m0", 100), event("m0", 119)])  # one kept, one not
    view = reader.message("verihubs", "m0")
    assert [u.code for u in view.unknown] == list(range(100, 116))
    assert view.anomalies["unknown_codes_not_kept"] == 5
    assert reader.counters()["unknown|verihubs|whatsapp-otp"] == 22
    assert view.state == "sent"
