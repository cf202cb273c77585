"""The pure model as a reference for the Lua write path: events of a few messages across
products, and the counters, billing and states they must leave, computed by the model alone
and read back from Redis."""

from __future__ import annotations

from collections import Counter

from core import counters, model, products
from core.events import Event

DAY_MS = 86_400_000
MIDNIGHT = 1_795_564_800_000  # 2026-11-24T00:00:00Z
PRODUCTS = {
    "m0": ("verihubs", "whatsapp-otp"),
    "m1": ("verihubs", "whatsapp-message"),
    "m2": ("verihubs", "whatsapp-otp"),
    "m3": ("verihubs", "sms-otp"),
    "m4": ("meta", "whatsapp"),
    "m5": ("twilio", "sms"),
}
DEFAULT = ("verihubs", "whatsapp-otp")  # for ids outside PRODUCTS
UNKNOWN_CODE = 42


def event(message_id: str, code: int, billable: int = -1) -> Event:
    # A provider's re-sent callback carries the same timestamp; times straddle midnight.
    at = MIDNIGHT - 3_600_000 + (hash((message_id, code)) % 7_200_000)
    return Event(*PRODUCTS.get(message_id, DEFAULT), message_id, code, at, at, billable)


def reference(events: list[Event]) -> tuple[Counter[str], Counter[str], dict[str, str]]:
    """Counters, billing and states computed by the pure model alone."""
    counts: Counter[str] = Counter()
    billing: Counter[str] = Counter()
    messages: dict[str, model.Message | None] = dict.fromkeys(e.message_id for e in events)
    first: dict[str, int] = {}
    for e in events:
        prod = products.product(e.provider, e.product)
        status = prod.status(e.code)
        lp = f"{e.provider}|{e.product}"
        flag = model.BillingFlag.from_wire(e.billable)
        messages[e.message_id], effect = model.apply(messages[e.message_id], prod, status, flag)
        counts[f"received|{lp}|{status.value if status else 'unknown'}"] += 1
        if effect.outcome in (model.Outcome.NEW, model.Outcome.LATE):
            counts[f"seen|{lp}|{status.value}"] += 1
        counts[f"{effect.outcome.value}|{lp}"] += effect.outcome != model.Outcome.NEW
        counts[f"started|{lp}"] += effect.started
        counts[f"conflict|{lp}"] += effect.conflict
        counts[f"billable|{lp}"] += effect.billable_delta > 0
        counts[f"billable_reversed|{lp}"] += effect.billable_delta < 0
        if effect.transition:
            counts["transition|{}|{}|{}".format(lp, *effect.transition)] += 1
        first[e.message_id] = min(first.get(e.message_id, e.at_ms), e.at_ms)
    for mid, m in messages.items():
        provider, name = PRODUCTS.get(mid, DEFAULT)
        if m is not None and products.product(provider, name).is_billable(m.seen, m.flags):
            billing[f"{first[mid] // DAY_MS}|{provider}|{name}"] += 1
    states = {
        mid: (model.current_state(m.seen).value if m.seen else "none")
        for mid, m in messages.items()
        if m is not None
    }
    return +counts, +billing, states


def stored(redis, reader, ids=PRODUCTS) -> tuple[Counter[str], Counter[str], dict[str, str]]:
    """Counters (histograms aside), billing and states as Redis holds them."""
    values = reader.counters()
    kept = Counter({k: v for k, v in values.items() if not _is_histogram(k)})
    billing = Counter({k.decode(): int(v) for k, v in redis.hgetall("otp:billing").items()})
    views = {m: reader.message(PRODUCTS.get(m, DEFAULT)[0], m) for m in ids}
    return +kept, +billing, {m: v.state for m, v in views.items() if v}


def _is_histogram(field: str) -> bool:
    return counters.BY_KEY[field.split("|")[0]].is_histogram
