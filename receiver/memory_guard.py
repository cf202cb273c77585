"""Refuse callbacks (503) while Redis's memory nears its maxmemory, before Redis itself
refuses writes mid-batch; and export Redis memory so an alert fires before it is full.

The figures are refreshed in the background about once a second, so neither a callback
nor a scrape waits on INFO.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import structlog
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import Redis, RedisError

from core import storage
from receiver.errors import Unavailable

log = structlog.get_logger("receiver")
REFRESH_SECONDS = 1.0
# Figures older than this are not believed (Redis unreachable): neither refused nor exported.
STALE_SECONDS = 10.0


class MemoryGuard(Collector):
    def __init__(self, redis: Redis, limit: float, allow_eviction: bool) -> None:
        self.redis = redis
        self.limit = limit
        # An evicting policy found after start-up (CONFIG SET, a failover) refuses too.
        self.allow_eviction = allow_eviction
        self.facts: storage.Memory | None = None
        self.measured_at = 0.0

    def refresh(self) -> None:
        try:
            self.facts = storage.memory(self.redis)
            self.measured_at = time.monotonic()
        except RedisError:
            pass  # readiness and the batcher report an unreachable Redis

    async def run(self) -> None:
        while True:
            await asyncio.to_thread(self.refresh)
            await asyncio.sleep(REFRESH_SECONDS)

    def _current(self) -> storage.Memory | None:
        fresh = time.monotonic() - self.measured_at < STALE_SECONDS
        return self.facts if fresh else None

    def check(self) -> None:
        facts = self._current()
        if facts is None:
            return
        if facts.evicts and not self.allow_eviction:
            raise Unavailable("redis_evicts", "storage may drop data, retry later")
        if facts.maxmemory and facts.used_memory >= self.limit * facts.maxmemory:
            raise Unavailable("redis_memory_full", "storage is nearly full, retry later")

    def collect(self) -> Iterator[Metric]:
        facts = self._current()
        if facts is None:
            return
        used = GaugeMetricFamily("otp_redis_memory_used_bytes", "Memory Redis uses")
        used.add_metric([], facts.used_memory)
        limit = GaugeMetricFamily("otp_redis_memory_max_bytes", "Redis maxmemory (0: no limit set)")
        limit.add_metric([], facts.maxmemory)
        yield from (used, limit)

    def describe(self) -> Iterator[Metric]:
        return iter(())
