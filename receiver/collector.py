"""Exports the Redis-held counters (exact across processes) as Prometheus families."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from redis import Redis, RedisError
from rq import Queue

from core import counters
from core.keys import Keys
from core.outbox import endpoint_states
from core.queue_health import oldest_age, queued_events
from core.read import Reader

Labels = tuple[str, ...]


class RedisCollector(Collector):
    def __init__(self, reader: Reader, queue: Queue) -> None:
        self.reader = reader
        self.queue = queue

    def collect(self) -> Iterator[Metric]:
        """Everything Redis holds, read in one go; without Redis, only `otp_redis_up 0`.

        Either every Redis-held family is exported or none is, so a scrape during an outage
        shows missing series (and redis_up 0), never counters that went backwards.
        """
        try:
            metrics = [
                *self._counters(),
                *_queue_gauges(self.queue, self.reader.keys),
                *_forward_gauges(self.queue.connection, self.reader.keys),
            ]
        except RedisError:
            metrics = []
        up = GaugeMetricFamily("otp_redis_up", "Whether Redis answered this scrape")
        up.add_metric([], 1 if metrics else 0)
        return iter([*metrics, up])

    def _counters(self) -> Iterator[Metric]:
        values = self.reader.counters()
        for family in counters.FAMILIES:
            rows = _rows(values, family.key)
            yield _histogram(family, rows) if family.is_histogram else _counter(family, rows)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected lazily: registering must not touch Redis


def _rows(values: dict[str, int], key: str) -> dict[Labels, int]:
    prefix = key + counters.SEP
    return {
        tuple(name[len(prefix) :].split(counters.SEP)): n
        for name, n in values.items()
        if name.startswith(prefix)
    }


def _counter(family: counters.Family, rows: dict[Labels, int]) -> Metric:
    metric = CounterMetricFamily(family.name, family.help, labels=family.labels)
    for labels, n in sorted(rows.items()):
        if len(labels) == len(family.labels):
            metric.add_metric(list(labels), n)
    return metric


def _histogram(family: counters.Family, rows: dict[Labels, int]) -> Metric:
    metric = HistogramMetricFamily(family.name, family.help, labels=family.labels)
    series: dict[Labels, dict[str, int]] = defaultdict(dict)
    for labels, n in rows.items():
        if len(labels) == len(family.labels) + 1:
            series[labels[:-1]][labels[-1]] = n
    bounds = [*(str(float(b)) for b in family.buckets), "+Inf"]
    for labels, cells in sorted(series.items()):
        cumulative, buckets = 0, []
        for i, le in enumerate(bounds):
            cumulative += cells.get(f"b{i}", 0)
            buckets.append((le, cumulative))
        metric.add_metric(list(labels), buckets, cells.get("sum", 0) / family.sum_scale)
    return metric


def _queue_gauges(queue: Queue, keys: Keys) -> Iterator[Metric]:
    redis: Redis = queue.connection
    depth = GaugeMetricFamily("otp_queue_depth", "Batches waiting in the queue", labels=["queue"])
    depth.add_metric([queue.name], redis.llen(queue.key))
    yield depth
    events = GaugeMetricFamily(
        "otp_queue_events",
        "Callbacks waiting in the queued batches (what MAX_BACKLOG bounds)",
        labels=["queue"],
    )
    events.add_metric([queue.name], queued_events(queue, keys))
    yield events
    oldest = GaugeMetricFamily(
        "otp_queue_oldest_age_seconds",
        "Age of the oldest waiting batch (0: none)",
        labels=["queue"],
    )
    oldest.add_metric([queue.name], oldest_age(queue))
    yield oldest
    failed = GaugeMetricFamily(
        "otp_queue_failed_jobs", "Batches that failed and wait for replay", labels=["queue"]
    )
    failed.add_metric([queue.name], queue.failed_job_registry.count)
    yield failed


def _forward_gauges(redis: Redis, keys: Keys) -> Iterator[Metric]:
    backlog = GaugeMetricFamily(
        "otp_forward_backlog_events",
        "Events not yet delivered to the endpoint (unread, in flight, waiting to retry)",
        labels=["endpoint"],
    )
    dead = GaugeMetricFamily(
        "otp_forward_dead_events",
        "Events that exhausted their retries, kept for `python -m workers.forward replay`",
        labels=["endpoint"],
    )
    for state in endpoint_states(redis, keys):
        backlog.add_metric([state.endpoint], state.backlog)
        dead.add_metric([state.endpoint], state.dead)
    yield backlog
    yield dead
