"""The pure model as a reference for the Lua write path: events of a few messages across
products, and the counters, billing and states they must leave, computed by the model alone
and read back from Redis."""

from __future__ import annotations

from collections import Counter

from core import counters, keys, model, products
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
# Another product of the same provider, as a callback on the wrong product's URL names it
# (meta has one product: its callbacks cannot name another).
INTRUDERS = {"verihubs": ("sms-otp", "whatsapp-otp"), "twilio": ("whatsapp", "sms"), "meta": ()}


def event(message_id: str, code: int, billable: int = -1, intruder: bool = False) -> Event:
    """A callback of one of a few messages; an intruder names another product than the
    message's own (the same for meta, which has one product)."""
    # A provider's re-sent callback carries the same timestamp; times straddle midnight.
    at = MIDNIGHT - 3_600_000 + (hash((message_id, code)) % 7_200_000)
    provider, product = PRODUCTS.get(message_id, DEFAULT)
    others = [p for p in INTRUDERS[provider] if p != product]
    if intruder and others:
        product = others[0]
    return Event(provider, product, message_id, code, at, at, billable)


def bucket(first_ms: int, provider: str, product: str) -> str:
    """A billing bucket as `<UTC day>|<quarter of the day>|<provider>|<product>`."""
    quarter = first_ms % DAY_MS // keys.QUARTER_MS
    return f"{first_ms // DAY_MS}|{quarter}|{provider}|{product}"


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
        if effect.outcome == model.Outcome.MISMATCH:
            counts[f"received|{lp}|mismatch"] += 1
            counts[f"mismatch|{lp}"] += 1
            continue
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
        provider = PRODUCTS.get(mid, DEFAULT)[0]
        if m is not None and products.product(provider, m.product).is_billable(m.seen, m.flags):
            billing[bucket(first[mid], provider, m.product)] += 1
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
    billing = billing_buckets(redis)
    views = {m: reader.message(PRODUCTS.get(m, DEFAULT)[0], m) for m in ids}
    return +kept, +billing, {m: v.state for m, v in views.items() if v}


def billing_buckets(redis) -> Counter[str]:
    """Every billing bucket Redis holds, as `bucket()` names them (zero counts left out)."""
    billing: Counter[str] = Counter()
    for key in redis.scan_iter(f"{keys.DEFAULT.billing}:*"):
        day = key.decode().rsplit(":", 1)[1]
        billing.update({f"{day}|{k.decode()}": int(v) for k, v in redis.hgetall(key).items()})
    assert not redis.exists(keys.DEFAULT.billing), "new messages are billed in 15-minute buckets"
    return +billing


def _is_histogram(field: str) -> bool:
    return counters.BY_KEY[field.split("|")[0]].is_histogram
