"""The admin answers' schemas: core.read's MessageView and BillingRow as JSON.

tests/test_openapi.py holds each schema to its dataclass (property names and order, required
set, types), so a field added or changed there fails until it is described here.
"""

from __future__ import annotations

from core import keys, model
from core.read import STATES
from receiver.openapi.blocks import Schema, array, date, date_time, obj, string


def message() -> Schema:
    states = [*(s.value for s in model.Status), model.NO_STATE]
    # null: a status known from the billing record only, its time expired with the state.
    seen_at = {**date_time(), "nullable": True}
    seen = obj(
        {"status": string(enum=[s.value for s in model.Status]), "first_seen": seen_at},
        ("status", "first_seen"),
    )
    unknown = obj({"code": {"type": "integer"}, "first_seen": date_time()}, ("code", "first_seen"))
    anomalies = {
        "type": "object",
        "description": "Only those that occurred: duplicates, late, conflict, product_mismatch.",
        "additionalProperties": {"type": "integer", "minimum": 1},
    }
    properties = {
        "provider": string(),
        "message_id": string(),
        "product": string(),
        "state": string(enum=states),
        "billable": {"type": "boolean"},
        "first_seen": date_time(),
        "statuses": array(seen),
        "unknown": array(unknown),
        "anomalies": anomalies,
        "history": array(history_entry()),
        "history_dropped": {
            "type": "integer",
            "minimum": 0,
            "description": f"Callbacks before the last {keys.MAX_HISTORY}: counted, not kept.",
        },
    }
    return obj(properties, tuple(properties))


def history_entry() -> Schema:
    properties = {
        "outcome": string(enum=[o.value for o in model.Outcome]),
        "code": {"type": "integer", "description": "In the product's numbering."},
        "provider_status": string("The provider's status as sent."),
        "status": {
            **string(enum=[s.value for s in model.Status]),
            "nullable": True,
            "description": "Canonical; null for a code the product does not know.",
        },
        "product": string("The product the callback named (another one: a mismatch)."),
        "at": date_time(),
        "received": date_time(),
    }
    return obj(properties, tuple(properties))


def message_page() -> Schema:
    summary = {
        "provider": string(),
        "message_id": string(),
        "product": string(),
        "state": string(enum=list(STATES)),
        "billable": {"type": "boolean"},
        "first_received": date_time(),
    }
    cursor = {**string("Pass as cursor for the next page."), "nullable": True}
    return obj(
        {"messages": array(obj(summary, tuple(summary))), "next_cursor": cursor},
        ("messages", "next_cursor"),
    )


def billing() -> Schema:
    day = obj(
        {
            "day": date(),
            "provider": string(),
            "product": string(),
            "billable": {"type": "integer"},
        },
        ("day", "provider", "product", "billable"),
    )
    zone = string("The IANA time zone whose days these are.")
    return obj(
        {"from": date(), "to": date(), "tz": zone, "days": array(day)},
        ("from", "to", "tz", "days"),
    )
