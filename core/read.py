"""The read side: one message's view, billing rows and the raw counters, as Redis holds them.

The web (admin API, metrics collector) reads through here; only the worker writes (the Lua
script, `workers/`). Field names come from `core.keys`, the same names the script is
rendered with.
"""

from __future__ import annotations

import base64
import binascii
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
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
class HistoryEntry:
    """One accepted callback of the message, as it arrived."""

    # new | duplicate | late | unknown | mismatch (core.model.Outcome)
    outcome: str
    # In the product's numbering (the canonical codes for providers that send names).
    code: int
    # The provider's status as sent: `delivered`, `verify.failed:delivery_failed`, `3`.
    provider_status: str
    # None for a code the product does not know (and for a mismatch's code).
    status: str | None
    product: str
    # The provider's time where it sends one, else the receipt time.
    at: str
    received: str


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
    history: list[HistoryEntry] = field(default_factory=list)
    # Callbacks past the last MAX_HISTORY: counted, not kept.
    history_dropped: int = 0


@dataclass(frozen=True)
class MessageSummary:
    provider: str
    message_id: str
    product: str
    state: str
    billable: bool
    # When the tracker received the message's first callback: what search filters and
    # orders by (the message's own first_seen is the provider's earliest time).
    first_received: str


@dataclass(frozen=True)
class Page:
    messages: list[MessageSummary]
    # Pass back as `cursor` for the next (older) page; None on the last page.
    next_cursor: str | None


# Every state a message can be indexed under: a status, or none (only unknown codes seen).
STATES: tuple[str, ...] = (*(s.value for s in model.ORDER), model.NO_STATE)


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
        return _message_view(provider, message_id, _decoded(raw))

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

    def find(self, message_id: str) -> list[MessageView]:
        """The message under every provider that holds this id (ids are the providers')."""
        pipe = self.redis.pipeline(transaction=False)
        for provider in PROVIDER_NAMES:
            pipe.hgetall(self.keys.message(provider, message_id))
        return [
            _message_view(provider, message_id, _decoded(raw))
            for provider, raw in zip(PROVIDER_NAMES, pipe.execute(), strict=True)
            if raw
        ]

    def search(
        self,
        *,
        providers: Sequence[str] = (),
        products: Sequence[str] = (),
        states: Sequence[str] = (),
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Tracked messages first received in [since, until), newest first, from the index
        sets of the filters (empty: all): a page reads at most `limit + 1` ids of each set.

        Ties of receipt time are ordered by provider, product and id (all descending), so
        the cursor (the last message returned) resumes exactly. ValueError for a bad cursor.
        """
        sets = self._sets(providers, products, states)
        after = _decode_cursor(cursor) if cursor else None
        high = f"({until_ms}" if until_ms is not None else "+inf"
        low = since_ms if since_ms is not None else "-inf"
        ties = after is not None and (until_ms is None or after[0] < until_ms)
        if after is not None:
            # Resume below the cursor: its time's ties after it, then what is older.
            high = f"({min(after[0], until_ms)}" if until_ms is not None else f"({after[0]}"
        pipe = self.redis.pipeline(transaction=False)
        for key in sets.values():
            if ties:
                pipe.zrange(key, after[0], after[0], byscore=True, withscores=True)
            pipe.zrange(
                key, high, low, desc=True, byscore=True, offset=0, num=limit + 1, withscores=True
            )
        replies = iter(pipe.execute())
        found: list[tuple[int, str, str, str]] = []
        for provider, product, _ in sets:
            if ties:
                tied = _entries(next(replies), provider, product)
                found += [e for e in tied if e[1:] < after[1:] and (since_ms or 0) <= e[0]]
            found += _entries(next(replies), provider, product)
        # Redis orders a set's ties by member, descending (ZRANGE REV): so does the page.
        found.sort(reverse=True)
        page = found[:limit]
        views = self._summaries([(p, m, score) for score, p, _, m in page])
        more = len(found) > limit
        return Page(views, _encode_cursor(page[-1]) if more and page else None)

    def state_counts(
        self, since_ms: int | None = None, until_ms: int | None = None
    ) -> dict[tuple[str, str, str], int]:
        """Messages first received in [since, until) by provider, product and current state:
        exact, one ZCOUNT per index set."""
        sets = self._sets((), (), ())
        high = f"({until_ms}" if until_ms is not None else "+inf"
        low = since_ms if since_ms is not None else "-inf"
        pipe = self.redis.pipeline(transaction=False)
        for key in sets.values():
            pipe.zcount(key, low, high)
        counts = zip(sets, pipe.execute(), strict=True)
        return {combo: n for combo, n in counts if n}

    def _sets(
        self, providers: Sequence[str], names: Sequence[str], states: Sequence[str]
    ) -> dict[tuple[str, str, str], str]:
        return {
            (p.provider, p.name, state): self.keys.index(p.provider, p.name, state)
            for p in products.PRODUCTS.values()
            if (not providers or p.provider in providers) and (not names or p.name in names)
            for state in (states or STATES)
        }

    def _summaries(self, ids: list[tuple[str, str, int]]) -> list[MessageSummary]:
        """Summaries of the messages still held: one whose state expired since it was
        indexed is left out."""
        pipe = self.redis.pipeline(transaction=False)
        for provider, message_id, _ in ids:
            pipe.hmget(
                self.keys.message(provider, message_id),
                [MessageField.PRODUCT, MessageField.SEEN, MessageField.FLAGS],
            )
        summaries = []
        for (provider, message_id, received), raw in zip(ids, pipe.execute(), strict=True):
            if raw[0] is None:
                continue
            product, seen = raw[0].decode(), model.from_mask(int(raw[1] or 0))
            state = model.current_state(seen)
            prod = products.product(provider, product)
            flags = model.BillingFlag(int(raw[2] or 0))
            summaries.append(
                MessageSummary(
                    provider,
                    message_id,
                    product,
                    state.value if state else model.NO_STATE,
                    bool(prod and prod.is_billable(seen, flags)),
                    iso(received),
                )
            )
        return summaries

    def counters(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.redis.hgetall(self.keys.counters).items()}


QUARTERS_PER_DAY = keys.DAY_MS // keys.QUARTER_MS
PROVIDER_NAMES = tuple(dict.fromkeys(p.provider for p in products.PRODUCTS.values()))


def _decoded(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


def _entries(
    reply: list[tuple[bytes, float]], provider: str, product: str
) -> list[tuple[int, str, str, str]]:
    return [(int(score), provider, product, member.decode()) for member, score in reply]


def _encode_cursor(entry: tuple[int, str, str, str]) -> str:
    text = SEP.join(str(part) for part in entry)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str, str, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        score, provider, product, message_id = text.split(SEP)
        return int(score), provider, product, message_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("cursor is not one this API returned") from None


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
        history=_history(provider, raw[MessageField.PRODUCT], raw),
        history_dropped=max(0, int(raw.get(MessageField.HISTORY_COUNT, 0)) - keys.MAX_HISTORY),
    )


def _as_sent(provider: str, code: int) -> str:
    """What a provider sent when the script kept no status of its own: Verihubs's code, or
    the canonical name the other providers' adapters mapped it from (core.products)."""
    status = products.CANONICAL_CODES.get(code)
    return status.value if status is not None and provider != "verihubs" else str(code)


OUTCOME_OF_LETTER = {letter: outcome for outcome, letter in keys.HISTORY_OUTCOMES.items()}


def _history(provider: str, product: str, raw: dict[str, str]) -> list[HistoryEntry]:
    """Decodes the ring apply.lua appends to (core.keys: its layout), oldest first."""
    count = int(raw.get(MessageField.HISTORY_COUNT, 0))
    kept = range(max(0, count - keys.MAX_HISTORY), count)
    slots = (keys.history_field(n % keys.MAX_HISTORY) for n in kept)
    entries = []
    for entry in [raw[s] for s in slots if s in raw]:
        head, received36, delta, *rest = entry.split(keys.HISTORY_PART_SEP)
        outcome, code = OUTCOME_OF_LETTER[head[0]], int(head[1:])
        received = int(received36, 36)
        as_sent = rest[0] if rest else ""
        came_as = rest[1] if len(rest) > 1 else product
        prod = products.product(provider, came_as) if came_as == product else None
        status = prod.status(code) if prod else None
        entries.append(
            HistoryEntry(
                outcome=outcome,
                code=code,
                provider_status=as_sent
                or (status.value if status and provider != "verihubs" else str(code)),
                status=status.value if status else None,
                product=came_as,
                at=iso(received - int(delta)),
                received=iso(received),
            )
        )
    return entries


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
