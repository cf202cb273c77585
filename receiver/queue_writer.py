"""Writes one batch of events as one RQ job, plus pending counters, in one Redis transaction."""

from __future__ import annotations

from collections import Counter

from redis import Redis
from rq import Retry
from rq.job import Job

from core import keys
from core.events import APPLY_BATCH, Event
from core.queue import queue
from core.settings import Settings


class QueueWriter:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.queue = queue(redis, settings)
        self.settings = settings
        self.queued_events = keys.queued_events(settings.queue_name)

    def write(self, events: list[Event], counts: Counter[str]) -> int:
        """Store the events (one job) and counter increments; return the queued events."""
        pipe = self.redis.pipeline()
        pipe.multi()  # RQ adds its writes to our transaction instead of opening its own
        # The backlog in events: the apply script takes a job's events off when it starts it.
        if events:
            pipe.incrby(self.queued_events, len(events))
        else:
            pipe.get(self.queued_events)
        for field, n in counts.items():
            pipe.hincrby(keys.COUNTERS, field, n)
        if events:
            self.queue.enqueue_job(self._job(events), pipeline=pipe)
        # Below 0 only if jobs written before the count existed were applied since.
        return max(0, int(pipe.execute()[0] or 0))

    def _job(self, events: list[Event]) -> Job:
        return self.queue.create_job(
            APPLY_BATCH,
            args=([e.to_wire() for e in events],),
            description=f"apply {len(events)} callbacks",
            timeout=self.settings.job_timeout,
            result_ttl=0,
            failure_ttl=self.settings.failed_job_ttl,
            retry=Retry(max=self.settings.job_retries) if self.settings.job_retries else None,
        )
