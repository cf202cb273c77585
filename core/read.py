"""The read side: one message's view, billing rows and the raw counters, as Redis holds them.

The web (admin API, metrics collector) reads through here; only the worker writes (the Lua
script, `workers/`). Field names come from `core.keys`, the same names the script is
rendered with.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

from redis import Redis

from core import keys, model, products
from core.clock import iso
from core.counters import SEP
from core.keys import MessageField

EPOCH = date(1970, 1, 1)


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


class Reader:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

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


def _billing_row(field_name: str, count: int) -> BillingRow:
    day, provider, product = field_name.split(SEP, 2)
    return BillingRow(EPOCH + timedelta(days=int(day)), provider, product, count)


def _message_view(provider: str, message_id: str, raw: dict[str, str]) -> MessageView:
    seen = model.from_mask(int(raw.get(MessageField.SEEN, "0")))
    flags = model.BillingFlag(int(raw.get(MessageField.FLAGS, "0")))
    prod = products.product(provider, raw[MessageField.PRODUCT])
    state = model.current_state(seen)
    anomalies = {
        "duplicates": int(raw.get(MessageField.DUPLICATES, 0)),
        "late": int(raw.get(MessageField.LATE, 0)),
        "conflict": int(model.is_conflict(seen)),
    }
    return MessageView(
        provider=provider,
        message_id=message_id,
        product=raw[MessageField.PRODUCT],
        state=state.value if state else model.NO_STATE,
        billable=bool(prod and prod.is_billable(seen, flags)),
        first_seen=iso(int(raw[MessageField.FIRST])),
        statuses=_seen(raw, seen),
        unknown=_unknown(raw),
        anomalies={k: v for k, v in anomalies.items() if v},
    )


def _seen(raw: dict[str, str], seen: Iterable[model.Status]) -> list[StatusSeen]:
    return sorted(
        (StatusSeen(s.value, iso(int(raw[keys.status_field(s.bit)]))) for s in seen),
        key=lambda s: s.first_seen,
    )


def _unknown(raw: dict[str, str]) -> list[UnknownCode]:
    prefix = MessageField.UNKNOWN_PREFIX
    codes = [(int(k[len(prefix) :]), int(v)) for k, v in raw.items() if k.startswith(prefix)]
    return [UnknownCode(code, iso(ms)) for code, ms in sorted(codes)]
