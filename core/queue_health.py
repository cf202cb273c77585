"""How the queue is doing, as an operator asks it: what waits, since when, who works it, what
failed. The console shows it; the same figures are the otp_queue_* gauges of /metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from rq import Queue, Worker

from core.keys import Keys


@dataclass(frozen=True)
class QueueHealth:
    name: str
    batches: int  # jobs waiting
    events: int  # callbacks in them (what MAX_BACKLOG bounds)
    oldest_age_seconds: float  # of the oldest waiting job; 0 when none waits
    workers: int  # registered workers listening on this queue
    busy_workers: int
    failed: int  # batches in the failed registry, waiting for replay


def health(queue: Queue, keys: Keys) -> QueueHealth:
    redis = queue.connection
    workers = Worker.all(queue=queue)
    return QueueHealth(
        name=queue.name,
        batches=redis.llen(queue.key),
        events=queued_events(queue, keys),
        oldest_age_seconds=oldest_age(queue),
        workers=len(workers),
        busy_workers=sum(1 for w in workers if w.get_state() == "busy"),
        failed=queue.failed_job_registry.count,
    )


def queued_events(queue: Queue, keys: Keys) -> int:
    """Callbacks waiting in the queue's batches (what MAX_BACKLOG bounds)."""
    # Below 0 only if jobs written before the count existed were applied since.
    return max(0, int(queue.connection.get(keys.queued_events(queue.name)) or 0))


def oldest_age(queue: Queue) -> float:
    job_id = queue.connection.lindex(queue.key, 0)
    job = queue.fetch_job(job_id.decode()) if job_id else None
    if job is None or job.enqueued_at is None:
        return 0.0
    return max(0.0, (datetime.now(UTC) - job.enqueued_at.replace(tzinfo=UTC)).total_seconds())
