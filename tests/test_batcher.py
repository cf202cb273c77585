"""Group commit against a real Redis: how concurrent requests become RQ jobs."""

from __future__ import annotations

import asyncio

from core.events import Event
from core.queue import queue
from receiver.batcher import GroupCommit
from receiver.queue_writer import QueueWriter


def events(tag: str, n: int) -> list[Event]:
    return [Event("meta", "whatsapp", f"{tag}-{i}", 1, 0, 0) for i in range(n)]


def job_sizes(redis, settings) -> list[int]:
    return [len(job.args[0]) for job in queue(redis, settings).get_jobs()]


def test_jobs_hold_at_most_max_batch_events_but_never_split_a_request(redis, settings):
    async def burst() -> None:
        batcher = GroupCommit(QueueWriter(redis, settings), max_batch=10, max_backlog=1000)
        requests = [events("big", 25), *(events(f"s{i}", 3) for i in range(7))]
        await asyncio.gather(*(batcher.submit(r) for r in requests))

    asyncio.run(burst())
    sizes = job_sizes(redis, settings)
    assert sum(sizes) == 25 + 7 * 3
    assert 25 in sizes  # one request's events stay together, answered at once
    assert all(size <= 10 for size in sizes if size != 25)
    assert len(sizes) <= 1 + 3  # the small requests still share jobs
