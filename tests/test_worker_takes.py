"""The worker taking many queued jobs at once (workers.main.BatchWorker.jobs_per_take).

Jobs are applied together only while they wait in the queue; each keeps its own replay
marker and its own fate: a job whose payload is not events, or whose event Redis refuses,
fails alone while the others finish. A worker killed anywhere in a take leaves its jobs to
RQ's maintenance, which retries them, and each is applied exactly once.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from redis import Redis

from core import keys
from core.events import Event
from core.queue import JobSerializer
from core.queue import queue as core_queue
from core.settings import Settings
from receiver.queue_writer import QueueWriter
from tests import batches
from tests.reference import event, reference, stored
from tests.support import make_settings
from tools.stack import Stack, wait_until
from workers import jobs, main
from workers.main import BatchWorker, store_for

ENV = {"LOG_LEVEL": "warning", "JOB_TIMEOUT": "2", "WORKER_MAINTENANCE_INTERVAL": "1"}
FAULT_WORKER = ("-c", "from tests.test_worker_takes import fault_worker; fault_worker()")
# Where the killed worker stops itself, before the BatchWorker method named.
FAULT_POINTS = {
    "taken": "_start_together",  # moved to the intermediate list, not yet started
    "applied": "_finish_together",  # every event applied, no job marked finished yet
}
JOBS = 40


def fault_worker() -> None:
    """`python -c`: the worker process, stopping itself at FAULT_POINT for the test to kill."""
    BatchWorker.abandoned_grace = 1
    name = FAULT_POINTS[os.environ["FAULT_POINT"]]
    original = getattr(BatchWorker, name)

    def stop_before(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGSTOP)
        return original(*args, **kwargs)

    setattr(BatchWorker, name, stop_before)
    main.main()


def write_jobs(redis: Redis, settings: Settings, n: int = JOBS) -> tuple[list[Event], list[str]]:
    """`n` jobs of 1 to 20 callbacks of a few hundred messages, as one serial client and
    a busy receiver make them."""
    rng = random.Random(23)
    ids = [f"t{i}" for i in range(200)]
    writer, written = QueueWriter(redis, settings), []
    for _ in range(n):
        batch = [event(rng.choice(ids), rng.randrange(12)) for _ in range(rng.randint(1, 20))]
        writer.write(batch, Counter())
        written += batch
    return written, ids


def burst(redis: Redis, settings: Settings) -> BatchWorker:
    jobs.bind(store_for(settings))
    worker = BatchWorker(
        [core_queue(redis, settings)],
        connection=redis,
        serializer=JobSerializer,
        default_result_ttl=0,
    )
    worker.keys = settings.keys
    worker.work(burst=True, logging_level="WARNING")
    return worker


def assert_nothing_left(redis: Redis, settings: Settings) -> None:
    queue = core_queue(redis, settings)
    assert queue.count == 0
    assert redis.zcard(queue.started_job_registry.key) == 0
    assert redis.llen(queue.intermediate_queue_key) == 0
    assert list(redis.scan_iter("rq:job:*")) == []
    assert list(redis.scan_iter("rq:execution:*")) == []
    assert list(redis.scan_iter("rq:executions:*")) == []
    assert list(redis.scan_iter(keys.DEFAULT.applied("*"))) == []


def test_queued_jobs_are_taken_together_and_each_applied_once(redis, settings, reader, monkeypatch):
    written, ids = write_jobs(redis, settings)
    takes = []
    apply_batches = jobs.apply_batches
    monkeypatch.setattr(jobs, "apply_batches", lambda b: takes.append(len(b)) or apply_batches(b))
    worker = burst(redis, settings)
    # The first job dequeued takes jobs_per_take - 1 more with it, and so on.
    per_take = BatchWorker.jobs_per_take
    assert takes == [min(per_take, JOBS - i) for i in range(0, JOBS, per_take)]
    assert stored(redis, reader, ids) == reference(written)
    assert_nothing_left(redis, settings)
    assert redis.llen(core_queue(redis, settings).failed_job_registry.key) == 0
    assert int(redis.hget(worker.key, "successful_job_count") or 0) == JOBS


def test_a_take_stops_at_jobs_per_take(redis, settings, reader, monkeypatch):
    written, ids = write_jobs(redis, settings, n=10)
    monkeypatch.setattr(BatchWorker, "jobs_per_take", 3)
    takes = []
    apply_batches = jobs.apply_batches
    monkeypatch.setattr(jobs, "apply_batches", lambda b: takes.append(len(b)) or apply_batches(b))
    burst(redis, settings)
    assert takes == [3, 3, 3]  # and the last job alone, through RQ's own path
    assert stored(redis, reader, ids) == reference(written)
    assert_nothing_left(redis, settings)


def test_a_job_that_is_not_events_fails_alone(redis, redis_server, reader):
    settings = make_settings(redis_server.url, JOB_RETRIES="0")
    before, ids = write_jobs(redis, settings, n=5)
    queue = core_queue(redis, settings)
    bad = queue.enqueue("workers.jobs.apply_batch", [["not", "an", "event"]], result_ttl=0)
    after = [event("t1", 2), event("t2", 3)]
    QueueWriter(redis, settings).write(after, Counter())
    burst(redis, settings)
    assert queue.failed_job_registry.get_job_ids() == [bad.id]
    assert stored(redis, reader, ids) == reference(before + after)
    assert queue.count == 0 and redis.zcard(queue.started_job_registry.key) == 0


def test_a_job_whose_event_redis_refuses_fails_alone_and_replays_exactly(redis, failing, reader):
    """As a misconfigured ACL refuses one message's key: that job fails, its other events
    and the other jobs of the take apply; replayed, it counts nothing twice."""
    allowed = [event("ok-1", 1), event("ok-2", 2)]
    poisoned = [event("ok-1", 2), event("bad", 2), event("ok-3", 1)]
    queue = core_queue(redis, failing)
    writer = QueueWriter(redis, failing)
    for batch in ([allowed[0]], poisoned, [allowed[1]]):
        writer.write(batch, Counter())
    job_ids = queue.job_ids
    applier = batches.as_applier(failing)
    redis.acl_setuser(
        batches.APPLIER,
        enabled=True,
        passwords=["+pw"],
        commands=["+@all"],
        keys=["~rq:*", "~otp:[^m]*", "~otp:m:verihubs:ok-*"],
        channels=["*"],
        reset_keys=True,
    )
    burst(Redis.from_url(applier.redis), applier)
    assert queue.failed_job_registry.get_job_ids() == [job_ids[1]]
    assert reader.message("verihubs", "ok-2").state == "delivered"
    assert reader.message("verihubs", "ok-3").state == "sent"  # after the refused event
    batches.fix_acl(redis)
    queue.failed_job_registry.requeue(job_ids[1])
    burst(Redis.from_url(applier.redis), applier)
    ids = ["ok-1", "ok-2", "ok-3", "bad"]
    assert stored(redis, reader, ids) == reference(allowed + poisoned)
    assert_nothing_left(redis, failing)


# A worker killed in the middle of a take ---------------------------------------------------


@pytest.fixture
def stacks() -> Iterator[list[Stack]]:
    made: list[Stack] = []
    yield made
    for stack in made:
        stack.stop()


def stopped(process: subprocess.Popen[bytes]) -> bool:
    with open(f"/proc/{process.pid}/stat") as stat:
        return stat.read().rsplit(") ", 1)[1].startswith("T")


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_jobs_of_a_worker_killed_in_a_take_end_finished_and_applied_once(
    point, redis, redis_server, reader, stacks, tmp_path
):
    settings = make_settings(redis_server.url, **ENV)
    written, ids = write_jobs(redis, settings)
    stack = Stack(redis_server.url, tmp_path, **ENV)
    stacks.append(stack)
    worker = stack.start_worker(*FAULT_WORKER, FAULT_POINT=point)
    wait_until(lambda: stopped(worker), what=f"the worker to reach {point}")
    worker.send_signal(signal.SIGKILL)
    worker.wait()

    queue = core_queue(redis, settings)
    taken = [i.decode() for i in redis.lrange(queue.intermediate_queue_key, 0, -1)]
    if point == "taken":
        # Every job of the take waits in the intermediate list: RQ requeues a job left there
        # a minute after its maintenance first saw it there; say that was a minute ago.
        assert len(taken) == min(JOBS, BatchWorker.jobs_per_take)
        for job_id in taken:
            redis.set(queue.intermediate_queue.get_first_seen_key(job_id), time.time() - 61)
    else:
        assert taken == []
        assert redis.zcard(queue.started_job_registry.key) == min(JOBS, BatchWorker.jobs_per_take)
        assert stored(redis, reader, ids) != reference([])  # applied, not marked finished
    stack.start_worker()
    wait_until(
        lambda: not list(redis.scan_iter("rq:job:*")) or queue.failed_job_registry.count > 0,
        timeout=30,
        what="the abandoned jobs to be retried",
    )
    assert queue.failed_job_registry.count == 0
    assert stored(redis, reader, ids) == reference(written), "applied exactly once"
    assert_nothing_left(redis, settings)
