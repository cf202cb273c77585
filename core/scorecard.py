"""The provider scorecard: per provider and product, over one window, how messages fared.

What each figure means (messages are those first seen in [since, until), by their current
state, counted exactly from the search index by `Reader.state_counts`):

- `started`: every such message, whatever its state.
- `delivered`: those whose state is delivery evidence (`core.model.DELIVERY_EVIDENCE`:
  delivered, read, verified; a verified OTP proves the code arrived).
  `delivery_rate` = delivered / started. An `unverified` message counts as not delivered:
  its state says the code expired, not whether it arrived, so the rate is a floor for OTP
  products whose expired codes were delivered.
- `verified`: those whose state is verified. `verification_rate` (conversion) = verified /
  started, as the providers define conversion: Vonage, "Conversion rate = (# successful
  verifications / # total verifications) * 100"
  (https://developer.vonage.com/verify/guides/velocity-rules, "Monitoring Your
  Conversions"); Twilio's `conversion_rate_percentage` = total_converted / total_attempts
  (https://twilio.com/docs/verify/api/verification-attempts-summary). None for a product
  that cannot report a verification (its table has no verified status), and for no message.
- `failed` and `failures`: those whose state is a failure (`core.model.FAILURES`), in all
  and per state (the failure mix); `failure_rate` = failed / started.
- `latency`: first delivery evidence minus the first of requested/sent, in seconds, p50 and
  p95 (nearest rank) over a SAMPLE: the newest `sample_limit` delivered messages of the window
  (its size is `latency.sample`; 0 leaves the percentiles None). Times are the providers'
  own where they send one.
- `billable`: messages billed, from the 15-minute billing buckets (by the message's first
  callback, as GET /billing counts them) that the window covers, so the window's ends are
  rounded out to the quarter-hour (`billable_since`, `billable_until`). Only messages that
  are billable count, so it is exact whatever their state.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from core import keys, model, products
from core.clock import iso
from core.counters import SEP
from core.read import Reader, StatusSeen

SAMPLE_LIMIT = 200
# Pages of the sample, each a search call: well under any limit the search caps.
SAMPLE_PAGE = 100
FAILURE_STATES = tuple(s.value for s in model.PRECEDENCE if s in model.FAILURES)
DELIVERED_STATES = tuple(s.value for s in model.PRECEDENCE if s in model.DELIVERY_EVIDENCE)


@dataclass(frozen=True)
class Latency:
    sample: int
    p50_seconds: float | None
    p95_seconds: float | None


@dataclass(frozen=True)
class ProductScore:
    provider: str
    product: str
    started: int
    delivered: int
    verified: int
    failed: int
    delivery_rate: float | None
    verification_rate: float | None
    failure_rate: float | None
    latency: Latency
    failures: dict[str, int]
    states: dict[str, int]
    billable: int


@dataclass(frozen=True)
class Scorecard:
    since: str
    until: str
    billable_since: str
    billable_until: str
    sample_limit: int
    products: list[ProductScore] = field(default_factory=list)


def scorecard(
    reader: Reader, since_ms: int, until_ms: int, sample_limit: int = SAMPLE_LIMIT
) -> Scorecard:
    counts = reader.state_counts(since_ms, until_ms)
    first_q, end_q = since_ms // keys.QUARTER_MS, -(-until_ms // keys.QUARTER_MS)
    billed = billable(reader, first_q, end_q)
    states: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for (provider, product, state), n in counts.items():
        states[provider, product][state] += n
    rows = [
        _score(reader, provider, product, states[provider, product], billed[provider, product],
               since_ms, until_ms, sample_limit)
        for provider, product in sorted(set(states) | set(billed))
    ]  # fmt: skip
    return Scorecard(
        since=iso(since_ms),
        until=iso(until_ms),
        billable_since=iso(first_q * keys.QUARTER_MS),
        billable_until=iso(end_q * keys.QUARTER_MS),
        sample_limit=sample_limit,
        products=rows,
    )


def billable(reader: Reader, first_q: int, end_q: int) -> Counter[tuple[str, str]]:
    """Billed messages per provider and product in the quarter-hours [first_q, end_q) since
    the epoch: the buckets `Reader.billing` sums per day, summed over a window instead."""
    per_day = keys.DAY_MS // keys.QUARTER_MS
    days = range(first_q // per_day, (end_q - 1) // per_day + 1) if end_q > first_q else range(0)
    pipe = reader.redis.pipeline(transaction=False)
    for day in days:
        pipe.hgetall(reader.keys.billing_day(day))
    totals: Counter[tuple[str, str]] = Counter()
    for day, buckets in zip(days, pipe.execute() if days else [], strict=True):
        for name, count in buckets.items():
            quarter, provider, product = name.decode().split(SEP, 2)
            if first_q <= day * per_day + int(quarter) < end_q:
                totals[provider, product] += int(count)
    return +totals


def _score(
    reader: Reader,
    provider: str,
    product: str,
    states: Counter[str],
    billed: int,
    since_ms: int,
    until_ms: int,
    sample_limit: int,
) -> ProductScore:
    started = sum(states.values())
    delivered = sum(states[s] for s in DELIVERED_STATES)
    verified = states[model.Status.VERIFIED.value]
    failures = {s: states[s] for s in FAILURE_STATES if states[s]}
    failed = sum(failures.values())
    table = products.product(provider, product)
    verifies = table is not None and model.Status.VERIFIED in table.codes.values()
    return ProductScore(
        provider=provider,
        product=product,
        started=started,
        delivered=delivered,
        verified=verified,
        failed=failed,
        delivery_rate=_rate(delivered, started),
        verification_rate=_rate(verified, started) if verifies else None,
        failure_rate=_rate(failed, started),
        latency=_latency(reader, provider, product, since_ms, until_ms, sample_limit)
        if delivered
        else Latency(0, None, None),
        failures=failures,
        states=dict(sorted(states.items())),
        billable=billed,
    )


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _latency(
    reader: Reader, provider: str, product: str, since_ms: int, until_ms: int, limit: int
) -> Latency:
    seconds: list[float] = []
    cursor: str | None = None
    seen = 0
    while seen < limit:
        page = reader.search(
            providers=(provider,),
            products=(product,),
            states=DELIVERED_STATES,
            since_ms=since_ms,
            until_ms=until_ms,
            limit=min(SAMPLE_PAGE, limit - seen),
            cursor=cursor,
        )
        for summary in page.messages:
            seen += 1
            view = reader.message(provider, summary.message_id)
            if view is not None and (value := delivery_seconds(view.statuses)) is not None:
                seconds.append(value)
        cursor = page.next_cursor
        if cursor is None or not page.messages:
            break
    return Latency(len(seconds), percentile(seconds, 50), percentile(seconds, 95))


def delivery_seconds(statuses: list[StatusSeen]) -> float | None:
    """From the first of requested/sent to the first delivery evidence; None when either
    end's time is unknown, or the provider's clocks put delivery first."""
    times: dict[str, float] = {
        s.status: datetime.fromisoformat(s.first_seen).timestamp()
        for s in statuses
        if s.first_seen is not None
    }
    starts = [times[s.value] for s in model.LATENCY_STARTS if s.value in times]
    ends = [times[s] for s in DELIVERED_STATES if s in times]
    if not starts or not ends or min(ends) < min(starts):
        return None
    return min(ends) - min(starts)


def percentile(values: list[float], p: float) -> float | None:
    """Nearest rank: a value of the sample, never an interpolation between two."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]
