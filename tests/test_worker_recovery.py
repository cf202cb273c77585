"""Crash recovery with real worker processes, and replay markers.

A worker is SIGKILLed at each point of a batch's life (between dequeue and start, applying it,
after applying it but before RQ marks it finished) and during a Redis outage; a worker is asked
to stop (SIGTERM) while Redis is down. Each time the batch ends finished, applied exactly once
(the model in tests/reference.py), and nothing is left in RQ's failed or started registry, its
intermediate list, or as a replay marker.

The killed worker stops itself (SIGSTOP) at the exact point (`fault_worker`), with a 1 s
abandoned grace instead of 10 s; everything else is the production worker, and recovery
waits for Redis to expire what it expires in production (the dead execution's heartbeat).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from redis import Redis
from rq.registry import StartedJobRegistry

from core import keys
from core.embedded import RedisServer
from core.events import Event
from core.queue import JobSerializer
from core.queue import queue as core_queue
from core.read import Reader
from core.settings import Settings
from receiver.queue_writer import QueueWriter
from tests.reference import event, reference, stored
from tests.support import make_settings
from tools.stack import Stack, wait_until
from workers import main
from workers.main import BatchWorker
from workers.store import PIPELINE_CHUNK, Store

TOTAL = 1_500  # two pipeline chunks: "applying" stops the worker between them
# JOB_TIMEOUT 2 + the 1 s grace: a dead worker's batch is abandoned 3 s after it started.
ENV = {"LOG_LEVEL": "warning", "JOB_TIMEOUT": "2", "WORKER_MAINTENANCE_INTERVAL": "1"}
FAULT_WORKER = ("-c", "from tests.test_worker_recovery import fault_worker; fault_worker()")
# Where the worker stops itself: the BatchWorker (or Store) method it stops in.
FAULT_POINTS = {
    "dequeued": "prepare_execution",  # taken off the queue, not yet in the started registry
    "registered": "prepare_job_execution",  # in the started registry, not yet started
    "applying": "Store._execute",  # after the first chunk of events
    "applied": "handle_job_success",  # every event applied, not yet marked finished
}


def fault_worker() -> None:
    """`python -c`: the worker process, stopping itself at FAULT_POINT for the test to kill."""
    point = os.environ["FAULT_POINT"]
    BatchWorker.abandoned_grace = 1
    cls, name = (Store, "_execute") if point == "applying" else (BatchWorker, FAULT_POINTS[point])
    original = getattr(cls, name)

    def stop_before(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGSTOP)
        return original(*args, **kwargs)

    def stop_after(*args, **kwargs):
        result = original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGSTOP)
        return result

    setattr(cls, name, stop_after if point == "applying" else stop_before)
    main.main()


@pytest.fixture
def own_redis(tmp_path) -> Iterator[RedisServer]:
    """A durable private Redis the test may stop and start again (appendfsync always)."""
    server = RedisServer(tmp_path / "redis", durable=True).start()
    yield server
    server.stop(kill=True)


@pytest.fixture
def stacks(tmp_path) -> Iterator[list[Stack]]:
    made: list[Stack] = []
    yield made
    for stack in made:
        stack.stop()


def make_stack(stacks: list[Stack], url: str, tmp_path, **env: str) -> Stack:
    stack = Stack(url, tmp_path, **{**ENV, **env})
    stacks.append(stack)
    return stack


def write_batch(redis: Redis, settings: Settings) -> tuple[list[Event], list[str], str]:
    rng = random.Random(11)
    ids = [f"r{i}" for i in range(300)]
    batch = [event(rng.choice(ids), rng.randrange(12)) for _ in range(TOTAL)]
    QueueWriter(redis, settings).write(batch, Counter())
    (job_id,) = core_queue(redis, settings).job_ids
    return batch, ids, job_id


def stopped(process: subprocess.Popen[bytes]) -> bool:
    with open(f"/proc/{process.pid}/stat") as stat:
        return stat.read().rsplit(") ", 1)[1].startswith("T")


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


def received(reader: Reader) -> int:
    return sum(v for k, v in reader.counters().items() if k.startswith("received|"))


def let_the_dead_execution_expire(redis: Redis, job_id: str) -> None:
    """Wait until Redis has expired the killed worker's execution (its heartbeat TTL), as it
    has by the time a production worker's maintenance (every WORKER_MAINTENANCE_INTERVAL)
    finds the batch abandoned, while RQ still lists it among the job's executions for 60 s
    more: the minute in which a retried batch used to fail in RQ's clean-up."""
    wait_until(
        lambda: not list(redis.scan_iter(f"rq:execution:{job_id}:*")),
        timeout=10,
        what="the dead execution to expire",
    )
    assert redis.zcard(f"rq:executions:{job_id}") == 1


def assert_recovered(redis: Redis, settings: Settings, batch, ids, job_id: str) -> None:
    queue = core_queue(redis, settings)
    failed = queue.failed_job_registry
    wait_until(
        lambda: not redis.exists(f"rq:job:{job_id}") or failed.count > 0,
        timeout=20,
        what="the abandoned batch to be retried",
    )
    assert failed.count == 0, "the retried batch ended as finished"
    assert queue.count == 0
    assert redis.zcard(queue.started_job_registry.key) == 0
    assert redis.llen(queue.intermediate_queue_key) == 0
    assert not redis.exists(keys.DEFAULT.applied(job_id)), (
        "a finished batch leaves no replay marker"
    )
    assert stored(redis, Reader(redis), ids) == reference(batch), "applied exactly once"


# 1. A worker killed anywhere in a batch's life ---------------------------------------------


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_a_batch_whose_worker_was_killed_ends_finished_and_applied_once(
    point, redis, redis_server, reader, stacks, tmp_path
):
    settings = make_settings(redis_server.url, **ENV)
    batch, ids, job_id = write_batch(redis, settings)
    stack = make_stack(stacks, redis_server.url, tmp_path)
    worker = stack.start_worker(*FAULT_WORKER, FAULT_POINT=point)
    wait_until(lambda: stopped(worker), what=f"the worker to reach {point}")
    applied = {"dequeued": 0, "registered": 0, "applying": PIPELINE_CHUNK, "applied": TOTAL}
    assert received(reader) == applied[point]
    kill(worker)

    queue = core_queue(redis, settings)
    if point in ("dequeued", "registered"):
        assert redis.lrange(queue.intermediate_queue_key, 0, -1) == [job_id.encode()]
        # RQ requeues a job left in its intermediate list a minute after its maintenance
        # first saw it there: say that was a minute ago.
        first_seen = queue.intermediate_queue.get_first_seen_key(job_id)
        redis.set(first_seen, time.time() - 61)
    if point != "dequeued":
        let_the_dead_execution_expire(redis, job_id)
    stack.start_worker()
    assert_recovered(redis, settings, batch, ids, job_id)


def retrying_in_an_outage(own_redis, stacks, tmp_path, job_timeout: str):
    """A worker that applied a first chunk of a batch, then lost Redis and retries it."""
    redis = Redis.from_url(own_redis.url)
    env = {"JOB_TIMEOUT": job_timeout}
    settings = make_settings(own_redis.url, **{**ENV, **env})
    batch, ids, job_id = write_batch(redis, settings)
    stack = make_stack(stacks, own_redis.url, tmp_path, **env)
    worker = stack.start_worker(*FAULT_WORKER, FAULT_POINT="applying")
    wait_until(lambda: stopped(worker), what="the worker to apply a first chunk")
    own_redis.stop(kill=True)
    worker.send_signal(signal.SIGCONT)
    wait_until(lambda: "retrying batch" in stack.log("worker0"), what="the worker to retry")
    return redis, settings, batch, ids, job_id, stack, worker


def test_a_batch_whose_worker_was_killed_during_a_redis_outage_ends_finished(
    own_redis, stacks, tmp_path
):
    # JOB_TIMEOUT 4: the batch retries through the outage for 2 s.
    redis, settings, batch, ids, job_id, stack, worker = retrying_in_an_outage(
        own_redis, stacks, tmp_path, job_timeout="4"
    )
    kill(worker)
    own_redis.start()  # the same data (AOF), an empty script cache

    let_the_dead_execution_expire(redis, job_id)
    stack.start_worker()
    assert_recovered(redis, settings, batch, ids, job_id)


# 2. A worker asked to stop while Redis is unreachable ---------------------------------------


def test_sigterm_stops_an_idle_worker_within_2s_while_redis_is_down(own_redis, stacks, tmp_path):
    stack = make_stack(stacks, own_redis.url, tmp_path)
    worker = stack.start_worker()
    own_redis.stop(kill=True)
    time.sleep(1)  # its blocking dequeue has lost Redis and is trying to reconnect
    asked = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0
    assert time.monotonic() - asked < 2


def test_sigterm_stops_a_worker_restarting_without_redis_cleanly_within_2s(
    own_redis, stacks, tmp_path
):
    """Redis gone before the worker ever reached RQ's loop: it waits and retries outside it,
    where RQ's signal handlers are not installed; asked to stop there, it still leaves
    cleanly (exit status 0), not killed by the signal."""
    own_redis.stop(kill=True)
    stack = make_stack(stacks, own_redis.url, tmp_path)
    worker = stack._spawn("worker0", [sys.executable, "-m", "workers.main"])
    stack.workers.append(worker)
    wait_until(lambda: "worker lost redis, restarting" in stack.log("worker0"), what="a restart")
    asked = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0
    assert time.monotonic() - asked < 2


def test_sigterm_stops_a_worker_retrying_a_batch_within_2s_and_the_batch_is_kept(
    own_redis, stacks, tmp_path
):
    # JOB_TIMEOUT 30: the batch would retry through the outage for 15 s.
    redis, settings, batch, ids, job_id, stack, worker = retrying_in_an_outage(
        own_redis, stacks, tmp_path, job_timeout="30"
    )

    asked = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0
    assert time.monotonic() - asked < 2

    # The batch it gave up is still started: RQ's maintenance retries it once its heartbeat
    # lapses (JOB_TIMEOUT + grace, 31 s here); ask it now as if that time had passed.
    own_redis.start()
    queue = core_queue(redis, settings)
    StartedJobRegistry(queue=queue).cleanup(timestamp=time.time() + 60)
    assert queue.job_ids == [job_id]
    stack.start_worker()
    assert_recovered(redis, settings, batch, ids, job_id)


# 3. Replay markers: gone with a finished batch, kept with a failed one ----------------------


def burst(redis: Redis, settings: Settings) -> None:
    """The production worker, in this process, until the queue is empty."""
    worker = BatchWorker(
        [core_queue(redis, settings)],
        connection=redis,
        serializer=JobSerializer,
        default_result_ttl=0,
    )
    worker.work(burst=True, logging_level="WARNING")


def markers(redis: Redis) -> list[bytes]:
    return list(redis.scan_iter(keys.DEFAULT.applied("*")))


def test_a_finished_batch_leaves_no_marker_a_failed_one_keeps_it_and_replays_exactly(
    redis, redis_server, store, reader, monkeypatch
):
    settings = make_settings(redis_server.url, JOB_RETRIES="0")
    writer = QueueWriter(redis, settings)
    finished = [event(f"f{i % 40}", i % 12) for i in range(300)]
    writer.write(finished, Counter())
    burst(redis, settings)
    assert markers(redis) == []

    # A batch that fails after its first chunk of events was applied.
    rng = random.Random(5)
    failing = [event(f"r{rng.randrange(300)}", rng.randrange(12)) for _ in range(TOTAL)]
    writer.write(failing, Counter())
    (job_id,) = core_queue(redis, settings).job_ids
    execute, calls = Store._execute, []

    def fail_after_first_chunk(self, *args):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("injected failure")
        return execute(self, *args)

    monkeypatch.setattr(Store, "_execute", fail_after_first_chunk)
    burst(redis, settings)
    failed = core_queue(redis, settings).failed_job_registry
    assert failed.get_job_ids() == [job_id]
    assert received(reader) == len(finished) + PIPELINE_CHUNK
    assert markers(redis) == [keys.DEFAULT.applied(job_id).encode()]
    assert redis.pttl(keys.DEFAULT.applied(job_id)) > (settings.failed_job_ttl - 60) * 1000

    # Replayed (`rq requeue`), it applies the rest and nothing twice, and ends finished.
    monkeypatch.undo()
    failed.requeue(job_id)
    burst(redis, settings)
    assert failed.count == 0
    assert markers(redis) == []
    ids = [f"f{i}" for i in range(40)] + [f"r{i}" for i in range(300)]
    assert stored(redis, reader, ids) == reference(finished + failing)
