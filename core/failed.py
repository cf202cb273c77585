"""Failed batches: the jobs RQ keeps in the queue's failed registry after their retries,
listed, opened and replayed. The one module for them: the CLI and the web console use it.

Replay is exact because the apply step is: a failed batch keeps its replay marker
(`<prefix>:applied:<job id>`) for FAILED_JOB_TTL, and a replayed job keeps its id, so the
events it had already applied count nothing again. Replaying is requeueing the job as it is
(`FailedJobRegistry.requeue`, what `rq requeue` does), with the queue's JSON serializer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from redis import Redis
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry

from core.events import Event
from core.queue import JobSerializer

# RQ's job ids are uuid4 hex (32 characters); anything else cannot be one of our batches.
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# What of an exception a person reads: its last line, this long at most.
MAX_ERROR = 300
HIDDEN_ID = "<message id>"


@dataclass(frozen=True)
class FailedBatch:
    job_id: str
    enqueued_at: str | None  # ISO
    failed_at: str | None  # ISO
    events: int
    # The last line of the exception, bounded, with the batch's message ids hidden (a Meta
    # wamid encodes the recipient's number).
    error: str


class UnreadableBatch(ValueError):
    """A failed job whose payload does not decode into events (e.g. a pickle that names
    code, refused by core.queue): it can be listed and deleted, not shown or applied."""


class Failed:
    def __init__(self, redis: Redis, queue_name: str) -> None:
        self.redis = redis
        self.registry = FailedJobRegistry(queue_name, connection=redis, serializer=JobSerializer)

    def list(self) -> list[FailedBatch]:
        """Newest first (by when the batch failed); jobs whose hash expired are left out."""
        ids = self.registry.get_job_ids()
        found = [
            j for j in Job.fetch_many(ids, connection=self.redis, serializer=JobSerializer) if j
        ]
        batches = [_summary(job) for job in found]
        return sorted(batches, key=lambda b: b.failed_at or "", reverse=True)

    def events(self, job_id: str) -> list[Event]:
        """The batch's events, in the order they were written. LookupError when no failed job
        has this id; UnreadableBatch when its payload is not events."""
        return _events(self._job(job_id))

    def replay(self, job_id: str) -> None:
        """Put the batch back on its queue; LookupError when no failed job has this id (or
        another replay took it first)."""
        job = self._job(job_id)
        try:
            self.registry.requeue(job)
        except InvalidJobOperation:
            raise LookupError(f"no failed batch {job_id!r}") from None

    def replay_all(self) -> int:
        """Requeue every failed batch; how many were requeued (those another replay took
        first, or whose hash expired meanwhile, are not counted)."""
        done = 0
        for job_id in self.registry.get_job_ids():
            try:
                self.replay(job_id)
            except LookupError:
                continue
            done += 1
        return done

    def _job(self, job_id: str) -> Job:
        if not JOB_ID.fullmatch(job_id) or job_id not in self.registry:
            raise LookupError(f"no failed batch {job_id[:64]!r}")
        try:
            return Job.fetch(job_id, connection=self.redis, serializer=JobSerializer)
        except NoSuchJobError:
            raise LookupError(f"no failed batch {job_id!r} (its job expired)") from None


def _events(job: Job) -> list[Event]:
    try:
        (wire,) = job.args
        return [Event(*e) for e in wire]
    except Exception as exc:  # any payload: decoding is the serializer's, shape is ours
        raise UnreadableBatch(f"failed batch {job.id!r} does not hold events") from exc


def _summary(job: Job) -> FailedBatch:
    try:
        events = _events(job)
    except UnreadableBatch:
        events = []
    return FailedBatch(
        job_id=job.id,
        enqueued_at=_iso(job.enqueued_at),
        failed_at=_iso(job.ended_at),
        events=len(events),
        error=_error(job, {e.message_id for e in events}),
    )


def _error(job: Job, message_ids: set[str]) -> str:
    result = job.latest_result()
    text = (result.exc_string if result is not None else None) or job._exc_info or ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else "unknown error"
    # Longest first, so an id that contains another is hidden whole.
    for message_id in sorted(message_ids, key=len, reverse=True):
        last = last.replace(message_id, HIDDEN_ID)
    return last if len(last) <= MAX_ERROR else last[: MAX_ERROR - 3] + "..."


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="milliseconds") if moment else None
