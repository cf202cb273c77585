"""What the web app holds while it runs: built at start-up from settings, never at import."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from redis import Redis

from core.queue import queue
from core.read import Reader
from core.redis import connect, connect_async
from core.settings import Settings
from receiver.auth import Guard
from receiver.batcher import GroupCommit
from receiver.collector import RedisCollector
from receiver.credentials import Credentials, Sources
from receiver.exposition import MetricsPage
from receiver.http_metrics import HttpMetrics
from receiver.memory_guard import MemoryGuard
from receiver.queue_writer import QueueWriter


@dataclass
class Context:
    settings: Settings
    redis: Redis
    reader: Reader
    batcher: GroupCommit
    registry: CollectorRegistry
    # /metrics: what this process alone knows (HTTP requests, admin refusals).
    metrics: MetricsPage
    # /metrics/shared: what Redis holds, the same on every process: one scrape target.
    shared: MetricsPage
    http: HttpMetrics
    credentials: Credentials
    sources: Sources
    memory: MemoryGuard
    guard: Guard

    @classmethod
    def build(cls, settings: Settings, redis: Redis, registry: CollectorRegistry) -> Context:
        reader = Reader(redis, settings.keys)
        # The writer has a connection of its own: WAIT must follow its transaction on it.
        writer = QueueWriter(
            connect(settings, writer=True), settings, connect_async(settings, writer=True)
        )
        # Two registries, two pages: scraping every process's /metrics must not multiply the
        # business figures by the number of processes.
        shared = CollectorRegistry()
        shared.register(RedisCollector(reader, queue(redis, settings)))
        memory = MemoryGuard(redis, settings.redis_memory_limit, settings.allow_evicting_redis)
        shared.register(memory)
        return cls(
            settings=settings,
            redis=redis,
            reader=reader,
            batcher=GroupCommit(writer, settings.max_batch, settings.max_backlog),
            registry=registry,
            metrics=MetricsPage(registry, settings.metrics_cache_seconds),
            shared=MetricsPage(shared, settings.metrics_cache_seconds),
            http=HttpMetrics(registry),
            credentials=Credentials.from_settings(settings),
            sources=Sources(settings.allowed_networks),
            memory=memory,
            guard=Guard(settings.auth_failures_per_minute, registry),
        )
