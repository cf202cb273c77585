"""The /metrics page, rendered at most once per METRICS_CACHE_SECONDS per process.

However many scrape, the registry is collected (and Redis read, see collector.py) once per
period, and a fresh page is answered from the event loop without a thread: a flood of
scrapes costs bytes, not rendering, and cannot starve the callbacks of the GIL.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest


class MetricsPage:
    def __init__(
        self,
        registry: CollectorRegistry,
        seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.seconds = seconds
        self.clock = clock
        self._lock = threading.Lock()  # rendered in the thread pool
        self._body: bytes | None = None
        self._rendered_at = 0.0

    async def body(self) -> bytes:
        body = self._fresh()
        if body is not None:
            return body
        return await asyncio.to_thread(self._render)

    def stale(self) -> bool:
        return self._fresh() is None

    def _fresh(self) -> bytes | None:
        if self._body is not None and self.clock() - self._rendered_at < self.seconds:
            return self._body
        return None

    def _render(self) -> bytes:
        with self._lock:  # concurrent scrapes of a stale page: one renders, the rest share it
            body = self._fresh()
            if body is None:
                body = self._body = generate_latest(self.registry)
                self._rendered_at = self.clock()
            return body
