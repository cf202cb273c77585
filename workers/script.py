"""Renders apply.lua with the model's tables, so the script cannot drift from the model."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from importlib.resources import files

from core import counters, keys, model, products, webhooks

# What the script answers for an event of a batch that was applied before.
REPLAY = "replay"
# How the script's error starts when its events were applied but some of their summed
# counter or billing increments could not be written.
UNFLUSHED = "UNFLUSHED"


def _lua_list(items: Iterable[object]) -> str:
    return "{" + ", ".join(_lua_value(i) for i in items) + "}"


def _lua_value(value: object) -> str:
    if isinstance(value, str):
        return '"' + value + '"'
    if isinstance(value, tuple):
        return _lua_list(value)
    return str(value)


def _ms(bounds: Iterable[float]) -> str:
    return _lua_list(round(b * 1000) for b in bounds)


def _lua_table(entries: dict[str, object]) -> str:
    return "{" + ", ".join(f"{k} = {_lua_value(v)}" for k, v in entries.items()) + "}"


def _counter_keys() -> dict[str, str]:
    """Each counter family's key under its constant's name in `core.counters` (RECEIVED ->
    K.received): the script names a family, never restates its key."""
    families = vars(counters).items()
    return {name.lower(): f.key for name, f in families if isinstance(f, counters.Family)}


def constants() -> dict[str, str]:
    charged = {f"{p.provider}|{p.name}": model.mask(p.charged) for p in products.PRODUCTS.values()}
    stages = [(counters.LATENCIES[s].key, end.bit) for s, end in model.LATENCY_ENDS.items()]
    return {
        "__NAMES__": _lua_list(s.value for s in model.ORDER),
        # Lua tables are 1-based: RANK[bit + 1] is the status's precedence.
        "__RANK__": _lua_list(s.rank for s in model.ORDER),
        "__BY_RANK__": _lua_list(s.bit for s in model.PRECEDENCE),
        "__FAIL__": str(model.mask(model.FAILURES)),
        "__EVIDENCE__": str(model.mask(model.DELIVERY_EVIDENCE)),
        "__OUTCOMES__": str(model.mask(model.OUTCOMES)),
        "__STARTS__": str(model.mask(model.LATENCY_STARTS)),
        "__CHARGED__": "{" + ", ".join(f'["{k}"] = {v}' for k, v in charged.items()) + "}",
        "__STAGES__": _lua_list(stages),
        "__LAT_BUCKETS__": _ms(counters.LATENCY_BUCKETS),
        "__LAG_BUCKETS__": _ms(counters.LAG_BUCKETS),
        "__BATCH_BUCKETS__": _lua_list(counters.BATCH_BUCKETS),
        "__FIELDS__": _lua_table({f.name.lower(): f.value for f in keys.MessageField}),
        "__COUNTERS__": _lua_table(_counter_keys()),
        "__OUTCOME_NAMES__": _lua_table({o.name.lower(): o.value for o in model.Outcome}),
        "__NO_STATE__": _lua_value(model.NO_STATE),
        "__REPLAY__": _lua_value(REPLAY),
        "__UNFLUSHED__": _lua_value(UNFLUSHED),
        "__DAY_MS__": str(keys.DAY_MS),
        "__QUARTER_MS__": str(keys.QUARTER_MS),
        "__RECORD_GENERATION_MS__": str(keys.RECORD_GENERATION_MS),
        "__DAY_SCHEME__": _lua_value(keys.DAY_SCHEME),
        "__QUARTER_SCHEME__": _lua_value(keys.QUARTER_SCHEME),
        "__RECORD_SEP__": _lua_value(keys.RECORD_SEP),
        "__MAX_UNKNOWN__": str(keys.MAX_UNKNOWN_CODES),
        "__HISTORY_OUTCOMES__": _lua_table(keys.HISTORY_OUTCOMES),
        "__MAX_HISTORY__": str(keys.MAX_HISTORY),
        "__HISTORY_PART_SEP__": _lua_value(keys.HISTORY_PART_SEP),
        "__OUTBOX_FIELDS__": _lua_table({f.name.lower(): f.value for f in webhooks.OutboxField}),
        "__STATE_TYPE__": _lua_value(webhooks.STATE_TYPE_FIELD),
        "__TIMEOUT_TYPE__": _lua_value(webhooks.TIMEOUT_TYPE_FIELD),
        "__FLAG_BILLABLE__": str(int(model.BillingFlag.BILLABLE)),
        "__FLAG_NOT_BILLABLE__": str(int(model.BillingFlag.NOT_BILLABLE)),
    }


@cache
def source(name: str = "apply.lua") -> str:
    """A script of this package (apply.lua, timer.lua) with the constants filled in."""
    here = files("workers")
    text = here.joinpath(name).read_text()
    text = text.replace("__STATE_FUNCTIONS__", here.joinpath("state.lua").read_text())
    for constant, value in constants().items():
        text = text.replace(constant, value)
    left = re.findall(r"__[A-Z_]+__", text)
    if left:
        raise RuntimeError(f"{name} names constants the renderer does not know: {left}")
    return text
