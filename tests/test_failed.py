"""Failed batches (core.failed): real batches failed by the real worker, listed, opened and
replayed exactly."""

from __future__ import annotations

from collections import Counter

import pytest
from redis import Redis

from core.counters import DUPLICATE, RECEIVED, SEP
from core.events import Event
from core.failed import HIDDEN_ID, MAX_ERROR, Failed, UnreadableBatch
from core.queue import JobSerializer, queue
from core.settings import Settings
from receiver.queue_writer import QueueWriter
from tests.support import make_settings
from workers import jobs
from workers.main import BatchWorker, store_for

AT = 1_795_000_000_000


def event(message_id: str, code: int = 2) -> Event:
    return Event("verihubs", "whatsapp-otp", message_id, code, AT, AT)


def work(redis: Redis, settings: Settings) -> None:
    """The production worker, in this process, until the queue is empty."""
    jobs.bind(store_for(settings))
    worker = BatchWorker(
        [queue(redis, settings)], connection=redis, serializer=JobSerializer, default_result_ttl=0
    )
    worker.keys = settings.keys
    worker.work(burst=True, logging_level="WARNING")


APPLIER = "applier"


def fail_batch(redis: Redis, settings: Settings, events: list[Event], poisoned: str) -> str:
    """Write a batch and let the worker fail it for real, as a misconfigured Redis ACL would:
    the worker's Redis user may not touch one message's key, so Redis refuses that event's
    script call (NOPERM, before the script runs) while the batch's other events apply."""
    allowed = sorted({e.message_id for e in events} - {poisoned})
    keys = ["~rq:*", "~otp:[^m]*", *(f"~{settings.keys.message('verihubs', m)}" for m in allowed)]
    redis.acl_setuser(
        APPLIER, enabled=True, passwords=["+pw"], commands=["+@all"], keys=keys, reset_keys=True
    )
    QueueWriter(redis, settings).write(events, Counter())
    (job_id,) = queue(redis, settings).job_ids
    work(redis, as_applier(settings))
    return job_id


def as_applier(settings: Settings) -> Settings:
    url = settings.redis.replace("redis://", f"redis://{APPLIER}:pw@")
    return make_settings(url, JOB_RETRIES="0")


def fix_acl(redis: Redis) -> None:
    redis.acl_setuser(APPLIER, enabled=True, keys=["~*"])


@pytest.fixture
def failing(redis, redis_server):
    yield make_settings(redis_server.url, JOB_RETRIES="0")
    redis.acl_deluser(APPLIER)  # the server outlives the test; FLUSHALL keeps users


def test_a_failed_batch_is_listed_with_its_events_and_an_error_without_ids(redis, failing):
    events = [event("s-1"), event("s-2"), event("s-3", 3)]
    job_id = fail_batch(redis, failing, events, poisoned="s-2")
    failed = Failed(redis, failing.queue_name)
    (batch,) = failed.list()
    assert batch.job_id == job_id and batch.events == 3
    assert batch.enqueued_at and batch.failed_at and batch.enqueued_at <= batch.failed_at
    assert "no permissions" in batch.error and "\n" not in batch.error
    # The key in Redis's message names the message id: never shown.
    assert "s-2" not in batch.error and HIDDEN_ID in batch.error
    assert len(batch.error) <= MAX_ERROR
    assert failed.events(job_id) == events


def test_replay_applies_what_failed_and_counts_nothing_twice(redis, failing, reader):
    events = [event("s-1"), event("s-2"), event("s-1", 3)]
    job_id = fail_batch(redis, failing, events, poisoned="s-2")
    assert reader.message("verihubs", "s-1").state == "read"  # applied before the failure
    before = reader.counters()
    fix_acl(redis)  # the cause, fixed
    failed = Failed(redis, failing.queue_name)
    failed.replay(job_id)
    assert failed.list() == []
    work(redis, as_applier(failing))
    assert reader.message("verihubs", "s-2").state == "delivered"
    after = reader.counters()
    changed = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    changed = {k: v for k, v in changed.items() if v}
    # Only s-2's one callback counted; s-1's two were not counted again.
    received = {k: v for k, v in changed.items() if k.startswith(RECEIVED.key + SEP)}
    assert received == {RECEIVED.field("verihubs", "whatsapp-otp", "delivered"): 1}, changed
    assert not any(k.startswith(DUPLICATE.key + SEP) for k in changed), changed
    assert queue(redis, failing).failed_job_registry.count == 0


def test_replay_all_requeues_every_failed_batch(redis, failing):
    fail_batch(redis, failing, [event("a-1"), event("a-2")], poisoned="a-2")
    fail_batch(redis, failing, [event("b-1")], poisoned="b-1")
    failed = Failed(redis, failing.queue_name)
    listed = failed.list()
    assert len(listed) == 2 and listed[0].failed_at >= listed[1].failed_at  # newest first
    assert failed.replay_all() == 2
    assert failed.list() == [] and queue(redis, failing).count == 2
    assert failed.replay_all() == 0


def test_unknown_ids_are_lookup_errors(redis, failing):
    job_id = fail_batch(redis, failing, [event("s-1")], poisoned="s-1")
    failed = Failed(redis, failing.queue_name)
    for bad in ("nope", "", "x" * 500, "../../etc", job_id + "0"):
        with pytest.raises(LookupError):
            failed.events(bad)
        with pytest.raises(LookupError):
            failed.replay(bad)
    failed.replay(job_id)
    with pytest.raises(LookupError):  # no longer failed: replayed once only
        failed.replay(job_id)
    # Another deployment's queue holds none of ours.
    assert Failed(redis, "other-callbacks").list() == []


def test_a_batch_whose_payload_is_not_events_is_listed_but_not_shown(redis, failing):
    jobs_queue = queue(redis, failing)
    job = jobs_queue.enqueue("workers.jobs.apply_batch", [["not", "an", "event"]], result_ttl=0)
    work(redis, failing)
    failed = Failed(redis, failing.queue_name)
    (batch,) = failed.list()
    assert batch.job_id == job.id and batch.events == 0 and batch.error
    with pytest.raises(UnreadableBatch):
        failed.events(job.id)
