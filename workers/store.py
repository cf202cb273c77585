"""Redis storage: applying events, and reading messages, billing and counters back.

Write functions take an optional pipeline, so callers batch many writes in one round trip.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import NoScriptError

from core import keys
from core.events import Event
from workers import model, products, script

EPOCH = date(1970, 1, 1)
# Bounds the memory of one round trip when a large batch is replayed.
PIPELINE_CHUNK = 1000


@dataclass(frozen=True)
class StatusSeen:
    status: str
    first_seen: str


@dataclass(frozen=True)
class UnknownCode:
    code: int
    first_seen: str


@dataclass(frozen=True)
class MessageView:
    provider: str
    message_id: str
    product: str
    state: str
    billable: bool
    first_seen: str
    statuses: list[StatusSeen]
    unknown: list[UnknownCode]
    anomalies: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BillingRow:
    day: date
    provider: str
    product: str
    billable: int


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Store:
    def __init__(self, redis: Redis, message_ttl: int, applied_ttl: int) -> None:
        self.redis = redis
        self.message_ttl_ms = message_ttl * 1000
        self.applied_ttl_ms = applied_ttl * 1000
        self._source = script.source()
        self._sha = hashlib.sha1(self._source.encode()).hexdigest()  # noqa: S324 - Redis's id

    def apply(
        self, batch_id: str, events: Sequence[Event], pipeline: Pipeline | None = None
    ) -> list[model.Outcome | None]:
        """Apply a batch, one script call per event, pipelined; None marks a replayed event.

        With a caller's pipeline the calls are only queued on it and nothing is returned
        (the caller must have loaded the script: `load_script`).
        """
        applied, now = keys.applied(batch_id), now_ms()
        if pipeline is not None:
            self._queue(pipeline, applied, events, range(len(events)), now)
            return []
        outcomes: list[model.Outcome | None] = []
        for start in range(0, len(events), PIPELINE_CHUNK):
            chunk = range(start, min(start + PIPELINE_CHUNK, len(events)))
            outcomes += self._execute(applied, events, chunk, now)
        return outcomes

    def load_script(self) -> None:
        self.redis.script_load(self._source)

    def _execute(
        self, applied: str, events: Sequence[Event], chunk: range, now: int
    ) -> list[model.Outcome | None]:
        for attempt in (1, 2):
            pipe = self.redis.pipeline(transaction=False)
            self._queue(pipe, applied, events, chunk, now)
            try:
                return [_outcome(r) for r in pipe.execute()]
            except NoScriptError:
                # Redis restarted or its script cache was flushed: load and apply again,
                # which is exact because every event is applied at most once.
                if attempt == 2:
                    raise
                self.load_script()
        raise AssertionError("unreachable")

    def _queue(
        self, pipe: Pipeline, applied: str, events: Sequence[Event], indexes: range, now: int
    ) -> None:
        for index in indexes:
            e = events[index]
            pipe.evalsha(
                self._sha,
                4,
                keys.message(e.provider, e.message_id),
                keys.COUNTERS,
                keys.BILLING,
                applied,
                e.provider,
                e.product,
                products.status_bit(e.provider, e.product, e.code),
                e.code,
                e.at_ms,
                e.received_ms,
                now,
                index,
                self.message_ttl_ms,
                self.applied_ttl_ms,
                len(events),
                e.billable,
            )

    def message(self, provider: str, message_id: str) -> MessageView | None:
        raw = self.redis.hgetall(keys.message(provider, message_id))
        if not raw:
            return None
        return _message_view(provider, message_id, {k.decode(): v.decode() for k, v in raw.items()})

    def billing(self, start: date, end: date) -> list[BillingRow]:
        rows = [
            _billing_row(k.decode(), int(v)) for k, v in self.redis.hgetall(keys.BILLING).items()
        ]
        wanted = [r for r in rows if start <= r.day <= end and r.billable]
        return sorted(wanted, key=lambda r: (r.day, r.provider, r.product))

    def counters(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.redis.hgetall(keys.COUNTERS).items()}


def _outcome(result: bytes) -> model.Outcome | None:
    return None if result == b"replay" else model.Outcome(result.decode())


def _billing_row(field_name: str, count: int) -> BillingRow:
    day, provider, product = field_name.split("|", 2)
    return BillingRow(EPOCH + timedelta(days=int(day)), provider, product, count)


def _message_view(provider: str, message_id: str, raw: dict[str, str]) -> MessageView:
    seen = model.from_mask(int(raw.get("m", "0")))
    flags = int(raw.get("b", "0"))
    hints = frozenset(h for h, b in ((False, 1), (True, 2)) if flags & b)
    prod = products.product(provider, raw["p"])
    state = model.current_state(seen)
    anomalies = {"duplicates": int(raw.get("d", 0)), "late": int(raw.get("l", 0))}
    anomalies["conflict"] = int(model.is_conflict(seen))
    return MessageView(
        provider=provider,
        message_id=message_id,
        product=raw["p"],
        state=state.value if state else model.NO_STATE,
        billable=bool(prod and prod.is_billable(seen, hints)),
        first_seen=iso(int(raw["f"])),
        statuses=_seen(raw, seen),
        unknown=_unknown(raw),
        anomalies={k: v for k, v in anomalies.items() if v},
    )


def _seen(raw: dict[str, str], seen: Iterable[model.Status]) -> list[StatusSeen]:
    return sorted(
        (StatusSeen(s.value, iso(int(raw[str(s.bit)]))) for s in seen),
        key=lambda s: s.first_seen,
    )


def _unknown(raw: dict[str, str]) -> list[UnknownCode]:
    codes = [(int(k[1:]), int(v)) for k, v in raw.items() if k.startswith("u")]
    return [UnknownCode(code, iso(ms)) for code, ms in sorted(codes)]
