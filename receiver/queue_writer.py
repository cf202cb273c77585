"""Writes one batch of events as one RQ job, plus pending counters, in one Redis transaction;
then, with REDIS_MIN_REPLICAS, waits (WAIT) until that many replicas hold it."""

from __future__ import annotations

from collections import Counter
from typing import Any

import structlog
from redis import Redis, RedisError
from redis.asyncio import Redis as AsyncRedis
from redis.client import Pipeline
from rq import Retry
from rq.job import Job

from core.events import APPLY_BATCH, Event
from core.queue import queue
from core.settings import Settings
from receiver.batcher import NotReplicated

log = structlog.get_logger("receiver")


class QueueWriter:
    """`redis` should be a `connect(settings, writer=True)` client: one connection, so that
    WAIT follows the transaction on the connection that wrote it."""

    def __init__(self, redis: Redis, settings: Settings, aredis: AsyncRedis | None = None) -> None:
        self.redis = redis
        # With an asyncio client (`connect_async(settings, writer=True)`), the batcher writes
        # on the event loop (write_async) instead of a thread per batch: about 20 us of CPU
        # a callback less (thread hand-offs; bench/run.py's receiver figure).
        self.aredis = aredis
        self.queue = queue(redis, settings)
        self.settings = settings
        self.keys = settings.keys
        self.queued_events = self.keys.queued_events(settings.queue_name)
        self.min_replicas = settings.redis_min_replicas
        self.wait_ms = max(1, round(settings.redis_replica_timeout * 1000))

    def close(self) -> None:
        """The writer's own connection (WAIT needs it to be the one that wrote)."""
        self.redis.close()

    async def aclose(self) -> None:
        if self.aredis is not None:
            await self.aredis.aclose()

    def write(self, events: list[Event], counts: Counter[str]) -> int:
        """Store the events (one job) and counter increments; return the queued events.

        Raises NotReplicated when the batch is stored but fewer than REDIS_MIN_REPLICAS
        replicas confirmed it within REDIS_REPLICA_TIMEOUT."""
        pipe, confirm = self._transaction(events, counts)
        return self._settled(pipe.execute(), confirm, len(events))

    async def write_async(self, events: list[Event], counts: Counter[str]) -> int:
        """`write` on the asyncio client: the same commands, RQ's job included (RQ stacks
        them on a pipeline without I/O; they are sent as they are, in one transaction)."""
        assert self.aredis is not None
        pipe, confirm = self._transaction(events, counts)
        apipe = self.aredis.pipeline(transaction=True)
        for args, options in pipe.command_stack:
            apipe.execute_command(*args, **options)
        pipe.reset()
        results = await apipe.execute()
        backlog = self._settled(results, False, len(events))
        if confirm:
            await self._confirm_async(int(results[1]), backlog, len(events))
        return backlog

    def _transaction(self, events: list[Event], counts: Counter[str]) -> tuple[Pipeline, bool]:
        """The batch's transaction, stacked and not yet sent; and whether WAIT follows it."""
        pipe = self.redis.pipeline()
        pipe.multi()  # RQ adds its writes to our transaction instead of opening its own
        # The backlog in events: the apply script takes a job's events off when it starts it.
        if events:
            pipe.incrby(self.queued_events, len(events))
        else:
            pipe.get(self.queued_events)
        confirm = bool(events) and self.min_replicas > 0
        if confirm:
            pipe.client_id()  # the connection that writes the batch: WAIT must run on it
        for field, n in counts.items():
            pipe.hincrby(self.keys.counters, field, n)
        if events:
            self.queue.enqueue_job(self._job(events), pipeline=pipe)
        return pipe, confirm

    def _settled(self, results: list[Any], confirm: bool, events: int) -> int:
        # Below 0 only if jobs written before the count existed were applied since.
        backlog = max(0, int(results[0] or 0))
        if confirm:
            self._confirm(int(results[1]), backlog, events)
        return backlog

    def _confirm(self, writer_id: int, backlog: int, events: int) -> None:
        """WAIT counts the replicas that hold every write of the connection it runs on; the
        CLIENT ID after it proves that this is still the connection that wrote the batch
        (a silent reconnect in between would make WAIT count nothing of ours)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.wait(self.min_replicas, self.wait_ms)
        pipe.client_id()
        try:
            replicas, same = pipe.execute()
        except RedisError as exc:  # stored, but whether it was replicated is unknown
            log.warning("replication not confirmed", error=type(exc).__name__, events=events)
            raise NotReplicated(backlog, 0) from exc
        self._confirmed(writer_id, backlog, replicas, same)

    async def _confirm_async(self, writer_id: int, backlog: int, events: int) -> None:
        assert self.aredis is not None
        pipe = self.aredis.pipeline(transaction=False)
        pipe.wait(self.min_replicas, self.wait_ms)
        pipe.client_id()
        try:
            replicas, same = await pipe.execute()
        except RedisError as exc:  # stored, but whether it was replicated is unknown
            log.warning("replication not confirmed", error=type(exc).__name__, events=events)
            raise NotReplicated(backlog, 0) from exc
        self._confirmed(writer_id, backlog, replicas, same)

    def _confirmed(self, writer_id: int, backlog: int, replicas: Any, same: Any) -> None:
        if int(same) != writer_id:
            raise NotReplicated(backlog, 0)
        if int(replicas) < self.min_replicas:
            raise NotReplicated(backlog, int(replicas))

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
