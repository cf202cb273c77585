"""Failed batches (core.failed): real batches failed by the real worker, listed, opened and
replayed exactly."""

from __future__ import annotations

import pytest

from core.counters import DUPLICATE, RECEIVED, SEP
from core.failed import HIDDEN_ID, MAX_ERROR, Failed, UnreadableBatch
from core.queue import queue
from tests.batches import as_applier, event, fail_batch, fix_acl, work


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
