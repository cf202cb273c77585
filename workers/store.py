"""The write side: applying events to Redis through the Lua script, one call per chunk of
events (of one or several batches), pipelined. Reads live in `core/read.py`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import NoScriptError, ResponseError

from core import model, products
from core.clock import now_ms
from core.events import Event
from core.keys import DEFAULT, DEFAULT_RECORD_SHARDS, Keys, record_crc
from core.settings import Settings
from workers import script

# Bounds the memory of one round trip when a large batch is replayed.
PIPELINE_CHUNK = 1000
# Events per script call: one call sums the counter and billing increments of its events and
# writes each once. Bounds how long one call holds Redis (~30 us of Redis time an event).
CALL_EVENTS = 64

# One event of a call: its batch's replay marker, the batch's events, its index in them.
_Call = tuple[str, Sequence[Event], int]


class Store:
    @classmethod
    def from_settings(cls, redis: Redis, settings: Settings) -> Store:
        # Replay markers must outlive any retry or replay of a failed job.
        return cls(
            redis,
            settings.message_ttl,
            settings.failed_job_ttl,
            settings.billing_horizon,
            settings.queue_name,
            settings.keys,
            settings.forward.delivery_timeouts,
            settings.forward.outbox_bound,
            settings.billing_record_shards,
        )

    def __init__(
        self,
        redis: Redis,
        message_ttl: int,
        applied_ttl: int,
        billing_horizon: int,
        queue_name: str,
        keys: Keys = DEFAULT,
        # (provider, product) -> DELIVERY_TIMEOUT seconds; 0 or missing: no timer.
        delivery_timeouts: Mapping[tuple[str, str], int] | None = None,
        outbox_max_events: int = 100_000,
        record_shards: int = DEFAULT_RECORD_SHARDS,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.queued_events = keys.queued_events(queue_name)
        self.message_ttl_ms = message_ttl * 1000
        self.applied_ttl_ms = applied_ttl * 1000
        self.billing_horizon_ms = billing_horizon * 1000
        self.delivery_timeouts_ms = {k: v * 1000 for k, v in (delivery_timeouts or {}).items()}
        self.outbox_max_events = outbox_max_events
        self.record_shards = record_shards
        self._source = script.source()
        self._sha = hashlib.sha1(self._source.encode()).hexdigest()  # noqa: S324 - Redis's id

    def apply(self, batch_id: str, events: Sequence[Event]) -> list[model.Outcome | None]:
        """Apply a batch; None marks a replayed event. Raises the first error Redis answered
        for an event (the batch's other events are applied all the same)."""
        (result,) = self.apply_many([(batch_id, events)])
        if isinstance(result, Exception):
            raise result
        return result

    def apply_many(
        self, batches: Sequence[tuple[str, Sequence[Event]]]
    ) -> list[list[model.Outcome | None] | Exception]:
        """Apply several batches (each with its own replay marker) in as few round trips as
        PIPELINE_CHUNK allows: per batch its outcomes, or the first error Redis answered for
        one of its events. Errors of the connection itself are raised."""
        now = now_ms()
        marked = [(self.keys.applied(batch_id), events) for batch_id, events in batches]
        calls = [(b, i) for b, (_, events) in enumerate(marked) for i in range(len(events))]
        outcomes: list[list[model.Outcome | None]] = [[] for _ in batches]
        errors: list[Exception | None] = [None] * len(batches)
        for start in range(0, len(calls), PIPELINE_CHUNK):
            chunk = calls[start : start + PIPELINE_CHUNK]
            for (b, _), reply in zip(chunk, self._execute(marked, chunk, now), strict=True):
                if isinstance(reply, Exception):
                    errors[b] = errors[b] or reply
                else:
                    outcomes[b].append(_outcome(reply))
        return [errors[b] or outcomes[b] for b in range(len(batches))]

    def load_script(self) -> None:
        self.redis.script_load(self._source)

    def _execute(
        self,
        marked: Sequence[tuple[str, Sequence[Event]]],
        chunk: Sequence[tuple[int, int]],
        now: int,
    ) -> list[object]:
        """One round trip: per event of the chunk its reply, an error where it failed.

        A call Redis refuses whole (an ACL refusing one of its keys, checked before the
        script runs) is retried one event per call, so only the refused events fail."""
        calls = [(marked[b][0], marked[b][1], index) for b, index in chunk]
        groups = [calls[i : i + CALL_EVENTS] for i in range(0, len(calls), CALL_EVENTS)]
        replies = self._round_trip(groups, now)
        refused = [g for g, reply in zip(groups, replies, strict=True) if _refused(g, reply)]
        alone = iter(self._round_trip([[call] for g in refused for call in g], now))
        out: list[object] = []
        for group, reply in zip(groups, replies, strict=True):
            if _refused(group, reply):
                for call_reply in (next(alone) for _ in group):
                    out += call_reply if isinstance(call_reply, list) else [call_reply]
            else:
                out += reply if isinstance(reply, list) else [reply] * len(group)
        return out

    def _round_trip(self, groups: Sequence[Sequence[_Call]], now: int) -> list[object]:
        """One pipeline of a call per group: each call's list of per-event replies (an error
        Redis answered for an event made a ResponseError), or the error of the whole call."""
        for attempt in (1, 2):
            pipe = self.redis.pipeline(transaction=False)
            for group in groups:
                self._queue(pipe, group, now)
            commands = list(pipe.command_stack)
            replies = pipe.execute(raise_on_error=False)
            if attempt == 1 and any(isinstance(r, NoScriptError) for r in replies):
                # Redis restarted or its script cache was flushed: load and apply again,
                # which is exact because every event is applied at most once.
                self.load_script()
                continue
            replies = [_unflushed(r) for r in replies]
            for number, (reply, command) in enumerate(zip(replies, commands, strict=True), 1):
                if isinstance(reply, ResponseError):
                    # Named as redis-py names the error it raises (the command, its keys):
                    # core.failed hides the message ids in it.
                    pipe.annotate_exception(reply, number, command[0])
            return [_per_event(reply) for reply in replies]
        raise AssertionError("unreachable")

    def _queue(self, pipe: Pipeline, calls: Sequence[_Call], now: int) -> None:
        keys: list[str] = []
        args: list[object] = [
            now,
            self.message_ttl_ms,
            self.applied_ttl_ms,
            self.billing_horizon_ms,
            self.outbox_max_events,
            self.record_shards,
        ]
        for applied, events, index in calls:
            e = events[index]
            keys += [
                self.keys.message(e.provider, e.message_id),
                self.keys.billing_record(e.provider, e.message_id),
                applied,
            ]
            args += [
                e.provider,
                e.product,
                products.status_bit(e.provider, e.product, e.code),
                e.code,
                e.at_ms,
                e.received_ms,
                index,
                len(events),
                e.billable,
                _as_sent(e),
                e.message_id,
                self.delivery_timeouts_ms.get((e.provider, e.product), 0),
                self.keys.index_prefix(e.provider),
                self.keys.billing_records(e.provider),
                record_crc(e.message_id),
            ]
        keys += [
            self.keys.counters,
            self.keys.billing,
            self.queued_events,
            self.keys.outbox,
            self.keys.timers,
        ]
        pipe.evalsha(self._sha, len(keys), *keys, *args)


def _per_event(reply: object) -> object:
    """A call's reply: its events' replies, an event's `{error}` made a ResponseError."""
    if not isinstance(reply, list):
        return reply
    return [ResponseError(r[0].decode()) if isinstance(r, list) else r for r in reply]


class Unflushed(ResponseError):
    """The script applied its events but could not write some of their summed counts."""


def _unflushed(reply: object) -> object:
    if isinstance(reply, ResponseError) and str(reply).startswith(script.UNFLUSHED):
        return Unflushed(str(reply))
    return reply


def _refused(group: Sequence[_Call], reply: object) -> bool:
    """Whether Redis refused a call of several events whole (nothing of it ran). Not an
    Unflushed call: retried, its events would only replay and their batches pass with the
    counts missing; they must fail instead."""
    return isinstance(reply, ResponseError) and not isinstance(reply, Unflushed) and len(group) > 1


def _as_sent(e: Event) -> str:
    """The provider's status for the history, left out where it is the canonical name of
    the code (Meta's `delivered`): the reader restores it from the code."""
    status = products.CANONICAL_CODES.get(e.code)
    return "" if status is not None and e.raw == status.value else e.raw


def _outcome(result: bytes) -> model.Outcome | None:
    text = result.decode()
    return None if text == script.REPLAY else model.Outcome(text)
