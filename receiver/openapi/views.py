"""The admin answers' schemas: core.read's MessageView and BillingRow as JSON.

tests/test_openapi.py holds each schema to its dataclass (property names and order, required
set, types), so a field added or changed there fails until it is described here.
"""

from __future__ import annotations

from core import model
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
    }
    return obj(properties, tuple(properties))


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
