"""Group commit: callbacks that arrive together are written as ONE RQ job in one round trip.

While one write is in flight, new callbacks queue up; the next write takes them all (up to
`max_batch`). At low load a batch is a single callback and nothing waits on a timer. Every
caller is answered only once its batch is in Redis (and, with REDIS_MIN_REPLICAS, in that
many replicas), or told it is not (Unavailable).

The backlog is counted in events (callbacks), not jobs: a job holds up to `max_batch` of
them and one Meta POST any number. Once the queued events reach `max_backlog`, callbacks
get 503 until workers drain them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from typing import Protocol

import structlog

from core.events import Event
from receiver.errors import Unavailable

log = structlog.get_logger("receiver")
BACKLOG_PROBE_SECONDS = 1.0
# Refusals counted in memory reach Redis at least this often (with a batch, sooner).
COUNTS_FLUSH_SECONDS = 0.5
NOT_REPLICATED = "storage did not confirm the write on enough replicas in time, retry later"
# Each caller's events (all of one request: Meta sends many statuses in one POST) and the
# future that answers it; no events stands for a counter-only write (a refusal being counted).
Pending = list[tuple[list[Event], "asyncio.Future[None]"]]


class NotReplicated(Exception):
    """The batch IS stored in the primary (a worker will apply it), but fewer replicas than
    required confirmed it in time. Its callers get 503; a provider's retry then adds a
    duplicate, which the state model absorbs."""

    def __init__(self, backlog: int, replicas: int) -> None:
        super().__init__(f"{replicas} replica(s) confirmed the batch")
        self.backlog = backlog
        self.replicas = replicas


class Writer(Protocol):
    def write(self, events: list[Event], counts: Counter[str]) -> int:
        """Store the events and counter increments atomically; return the events queued.

        Raises NotReplicated if they are stored but not confirmed by enough replicas, any
        other exception if they may not be stored."""
        ...

    def close(self) -> None: ...


class GroupCommit:
    def __init__(self, writer: Writer, max_batch: int, max_backlog: int) -> None:
        self.writer = writer
        self.max_batch = max_batch
        self.max_backlog = max_backlog
        self.backlog = 0
        self._pending: Pending = []
        self._counts: Counter[str] = Counter()
        self._flusher: asyncio.Task[None] | None = None
        self._count_timer: asyncio.Task[None] | None = None
        self._measured_at = 0.0

    async def submit(self, events: list[Event]) -> None:
        """Return once the events are durably queued; raise Unavailable if they were not."""
        self._check_backlog()
        await self._commit(events)

    async def count(self, field: str) -> None:
        """Count a refusal in memory. It reaches Redis with the next batch, or within
        COUNTS_FLUSH_SECONDS on its own, so a flood of refusals costs Redis at most one
        transaction per period; while Redis is away the counts wait for a later write."""
        self._counts[field] += 1
        if self._count_timer is None or self._count_timer.done():
            self._count_timer = asyncio.create_task(self._flush_counts_later())

    async def flush_counts(self) -> None:
        """Write the counts waiting in memory now (before /metrics reads them back)."""
        if self._counts:
            with contextlib.suppress(Unavailable):
                await self._commit([])

    async def _flush_counts_later(self) -> None:
        await asyncio.sleep(COUNTS_FLUSH_SECONDS)
        await self.flush_counts()

    def _check_backlog(self) -> None:
        if self.backlog < self.max_backlog:
            return
        # Let one callback through now and then: its write measures the backlog again.
        now = time.monotonic()
        if now - self._measured_at < BACKLOG_PROBE_SECONDS:
            raise Unavailable("backlog_full", "the processing backlog is full, retry later")
        self._measured_at = now

    async def _commit(self, events: list[Event]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((events, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        while self._pending:
            batch = self._take()
            counts, self._counts = self._counts, Counter()
            await self._write(batch, counts)

    def _take(self) -> Pending:
        """Callers whose events fit in `max_batch`; one request's events are never split (it
        is answered for all of them at once), so a lone large request makes a larger job."""
        taken, events = 1, len(self._pending[0][0])
        while taken < len(self._pending):
            more = len(self._pending[taken][0])
            if events + more > self.max_batch:
                break
            taken, events = taken + 1, events + max(more, 1)
        batch = self._pending[:taken]
        del self._pending[:taken]
        return batch

    async def _write(self, batch: Pending, counts: Counter[str]) -> None:
        events = [e for caller, _ in batch for e in caller]
        try:
            write_async = getattr(self.writer, "write_async", None)
            if write_async is not None and getattr(self.writer, "aredis", None) is not None:
                self.backlog = await write_async(events, counts)
            else:
                self.backlog = await asyncio.to_thread(self.writer.write, events, counts)
            self._measured_at = time.monotonic()
        except NotReplicated as exc:  # stored, counters included: nothing to keep for later
            self.backlog, self._measured_at = exc.backlog, time.monotonic()
            log.warning("batch unconfirmed", replicas=exc.replicas, events=len(events))
            _settle(batch, Unavailable("replication_timeout", NOT_REPLICATED))
            return
        except Exception as exc:  # any failure means "not stored": never answer 200 for it
            log.warning("batch not stored", error=type(exc).__name__, events=len(events))
            self._counts.update(counts)
            _settle(batch, Unavailable("redis_unavailable", "storage is unavailable, retry later"))
            return
        _settle(batch, None)


def _settle(batch: Pending, error: Exception | None) -> None:
    for _, future in batch:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
