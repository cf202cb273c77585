"""A worker killed in the middle of a batch: the job is recovered, retried, and counts once."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter

from rq.registry import StartedJobRegistry

from core.queue import queue as core_queue
from receiver.queue_writer import QueueWriter
from tests.reference import event, reference, stored
from tests.support import run_jobs
from tools.stack import Stack, wait_until

TOTAL = 40_000


def test_killed_worker_job_is_retried_without_double_counting(
    redis, redis_server, store, reader, settings, tmp_path
):
    rng = random.Random(7)
    ids = [f"k{i}" for i in range(2000)]
    batch = [event(rng.choice(ids), rng.randrange(12)) for _ in range(TOTAL)]
    QueueWriter(redis, settings).write(batch, Counter())

    stack = Stack(redis_server.url, tmp_path, LOG_LEVEL="warning")
    worker = stack.start_worker()
    wait_until(lambda: _received(reader) > 0, what="the worker to start applying")
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    partly = _received(reader)
    assert 0 < partly < TOTAL, "the kill should land mid-batch"

    # RQ's maintenance finds the job abandoned once its heartbeat lapses
    # (job timeout + 10 s); ask it now as if that time had passed.
    queue = core_queue(redis, settings)
    StartedJobRegistry(queue=queue).cleanup(timestamp=time.time() + settings.job_timeout + 120)
    assert queue.count == 1, "the abandoned job is queued again for a retry"
    run_jobs(redis, settings)

    assert queue.count == 0 and queue.failed_job_registry.count == 0
    assert stored(redis, reader, ids) == reference(batch)


def _received(reader) -> int:
    return sum(v for k, v in reader.counters().items() if k.startswith("received|"))
