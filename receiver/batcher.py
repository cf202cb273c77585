"""Group commit: callbacks that arrive together are written as ONE RQ job in one round trip.

While one write is in flight, new callbacks queue up; the next write takes them all (up to
`max_batch`). At low load a batch is a single callback and nothing waits on a timer. Every
caller is answered only once its batch is in Redis, or told it is not (Unavailable).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Protocol

import structlog

from core.events import Event
from receiver.errors import Unavailable

log = structlog.get_logger("receiver")
BACKLOG_PROBE_SECONDS = 1.0


class Writer(Protocol):
    def write(self, events: list[Event], counts: Counter[str]) -> int:
        """Store the events and counter increments atomically; return the queue's backlog."""
        ...


class GroupCommit:
    def __init__(self, writer: Writer, max_batch: int, max_backlog: int) -> None:
        self.writer = writer
        self.max_batch = max_batch
        self.max_backlog = max_backlog
        self.backlog = 0
        self.batch_sizes: Counter[int] = Counter()
        self._pending: list[tuple[Event, asyncio.Future[None]]] = []
        self._counts: Counter[str] = Counter()
        self._flusher: asyncio.Task[None] | None = None
        self._probed_at = 0.0

    async def submit(self, event: Event) -> None:
        """Return once the event is durably queued; raise Unavailable if it was not stored."""
        self._check_backlog()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((event, future))
        self._kick()
        await future

    def count(self, field: str) -> None:
        """Best effort: written with the next batch, kept in memory while Redis is away."""
        self._counts[field] += 1
        self._kick()

    def _check_backlog(self) -> None:
        if self.backlog < self.max_backlog:
            return
        # Let one callback through now and then: its write measures the backlog again.
        now = time.monotonic()
        if now - self._probed_at < BACKLOG_PROBE_SECONDS:
            raise Unavailable("backlog_full", "the processing backlog is full, retry later")
        self._probed_at = now

    def _kick(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        while self._pending or self._counts:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            counts, self._counts = self._counts, Counter()
            if not await self._write(batch, counts) and not batch:
                return  # only counters left and Redis is away: keep them for the next kick

    async def _write(
        self, batch: list[tuple[Event, asyncio.Future[None]]], counts: Counter[str]
    ) -> bool:
        try:
            self.backlog = await asyncio.to_thread(self.writer.write, [e for e, _ in batch], counts)
        except Exception as exc:  # any failure means "not stored": never answer 200 for it
            log.warning("batch not stored", error=type(exc).__name__, events=len(batch))
            self._counts.update(counts)
            _settle(batch, Unavailable("redis_unavailable", "storage is unavailable, retry later"))
            return False
        if batch:
            self.batch_sizes[len(batch)] += 1
        _settle(batch, None)
        return True


def _settle(batch: list[tuple[Event, asyncio.Future[None]]], error: Exception | None) -> None:
    for _, future in batch:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
