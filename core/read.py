"""The read side: one message's view, billing rows and the raw counters, as Redis holds them.

The web (admin API, metrics collector) reads through here; only the worker writes (the Lua
script, `workers/`). Field names come from `core.keys`, the same names the script is
rendered with.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from redis import Redis

from core import keys, model, products
from core.clock import iso
from core.counters import SEP
from core.keys import DEFAULT, Keys, MessageField

EPOCH = date(1970, 1, 1)
LAST_DAY = date(9999, 12, 30)


@dataclass(frozen=True)
class StatusSeen:
    status: str
    # None for a status known from the billing record only: its time expired with the state.
    first_seen: str | None


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
    def __init__(self, redis: Redis, keys: Keys = DEFAULT) -> None:
        self.redis = redis
        self.keys = keys

    def message(self, provider: str, message_id: str) -> MessageView | None:
        raw = self.redis.hgetall(self.keys.message(provider, message_id))
        if not raw:
            return None
        return _message_view(provider, message_id, {k.decode(): v.decode() for k, v in raw.items()})

    def billing(self, start: date, end: date, zone: tzinfo = UTC) -> list[BillingRow]:
        """Billable messages per day of `zone` (start and end included), provider and product.

        Counts are kept in 15-minute UTC buckets, so a day of any zone, 23 or 25 hours long
        included, is a whole number of them. Counts kept before buckets existed have UTC days
        only: they are reported on their UTC date whatever the zone.
        """
        # Nothing was billed before the epoch; the last date leaves room for the day after.
        start, end = max(start, EPOCH), min(end, LAST_DAY)
        if start > end:
            return []
        days = [start + timedelta(days=n) for n in range((end - start).days + 2)]
        # bounds[i]: the first quarter-hour (since the epoch) of days[i] in the zone.
        bounds = [_quarter(datetime.combine(d, time.min, zone)) for d in days]
        totals: Counter[tuple[date, str, str]] = Counter()
        first_day, last_day = bounds[0] // QUARTERS_PER_DAY, (bounds[-1] - 1) // QUARTERS_PER_DAY
        pipe = self.redis.pipeline(transaction=False)
        for utc_day in range(first_day, last_day + 1):
            pipe.hgetall(self.keys.billing_day(utc_day))
        pipe.hgetall(self.keys.billing)
        *quarters, legacy = pipe.execute()
        for utc_day, buckets in zip(range(first_day, last_day + 1), quarters, strict=True):
            for name, count in buckets.items():
                quarter, provider, product = name.decode().split(SEP, 2)
                index = bisect_right(bounds, utc_day * QUARTERS_PER_DAY + int(quarter)) - 1
                if 0 <= index < len(days) - 1:
                    totals[days[index], provider, product] += int(count)
        for name, count in legacy.items():
            row = _billing_row(name.decode(), int(count))
            if start <= row.day <= end:
                totals[row.day, row.provider, row.product] += row.billable
        return [BillingRow(*k, n) for k, n in sorted(totals.items()) if n]

    def counters(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.redis.hgetall(self.keys.counters).items()}


QUARTERS_PER_DAY = keys.DAY_MS // keys.QUARTER_MS


def _quarter(moment: datetime) -> int:
    return int(moment.timestamp() * 1000) // keys.QUARTER_MS


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
        "product_mismatch": int(raw.get(MessageField.MISMATCHES, 0)),
        "unknown_codes_not_kept": int(raw.get(MessageField.UNKNOWN_DROPPED, 0)),
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
    """In the order they were first seen; those whose time expired (known from the billing
    record only) first, by precedence."""
    times = {s: raw.get(keys.status_field(s.bit)) for s in seen}
    ordered = sorted(seen, key=lambda s: (times[s] is not None, int(times[s] or 0), s.rank))
    return [StatusSeen(s.value, iso(int(t)) if (t := times[s]) else None) for s in ordered]


def _unknown(raw: dict[str, str]) -> list[UnknownCode]:
    prefix = MessageField.UNKNOWN_PREFIX
    codes = [
        (int(k[len(prefix) :]), int(v))
        for k, v in raw.items()
        if k.startswith(prefix) and k[len(prefix) :].lstrip("-").isdigit()
    ]
    return [UnknownCode(code, iso(ms)) for code, ms in sorted(codes)]
