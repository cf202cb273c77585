"""GET /stats: the provider scorecard; its figures are defined in core/scorecard.py."""

from __future__ import annotations

from core.read import STATES
from core.scorecard import FAILURE_STATES
from receiver.openapi.admin import ADMIN_SECURITY, SINCE, admin_responses
from receiver.openapi.blocks import (
    ADMIN,
    Schema,
    array,
    date_time,
    error,
    json_content,
    obj,
    ok,
    operation,
    parameter,
    ref,
    string,
)


def stats() -> Schema:
    return operation(
        "getStats",
        ADMIN,
        "The provider scorecard: per provider and product, over the messages first received"
        " in [since, until), delivery, verification and failure rates, the failure mix,"
        " delivery latency p50/p95 over a sample, and billable messages.",
        admin_responses(
            ok("The scorecard.", json_content(ref("#/components/schemas/Stats"))),
            **{
                "400": error(
                    "A time that is neither a duration nor an ISO 8601 time with offset, or"
                    " since not before until."
                )
            },
        ),
        parameters=[
            parameter("query", "since", string(maxLength=64), f"{SINCE} Default 24h."),
            parameter("query", "until", string(maxLength=64), "Received before (default now)."),
        ],
        security=ADMIN_SECURITY,
    )


def schema() -> Schema:
    rate = {"type": "number", "minimum": 0, "maximum": 1, "nullable": True}
    seconds = {"type": "number", "minimum": 0, "nullable": True}
    count = {"type": "integer", "minimum": 0}
    latency = {
        "sample": {**count, "description": "Delivered messages the percentiles are of."},
        "p50_seconds": seconds,
        "p95_seconds": seconds,
    }
    per_state = {"type": "object", "additionalProperties": count}
    row = {
        "provider": string(),
        "product": string(),
        "started": {**count, "description": "Messages first received in the window."},
        "delivered": {**count, "description": "Of them, state delivered, read or verified."},
        "verified": count,
        "failed": count,
        "delivery_rate": {**rate, "description": "delivered / started."},
        "verification_rate": {
            **rate,
            "description": "verified / started (conversion); null for a product that"
            " reports no verification.",
        },
        "failure_rate": {**rate, "description": "failed / started."},
        "latency": obj(latency, tuple(latency)),
        "failures": {
            **per_state,
            "description": "The failure mix: messages per failure state"
            f" ({', '.join(FAILURE_STATES)}).",
        },
        "states": {
            **per_state,
            "description": f"Messages per current state ({', '.join(STATES)}).",
        },
        "billable": {
            **count,
            "description": "Billed messages of the billing buckets the window covers.",
        },
    }
    properties = {
        "since": date_time(),
        "until": date_time(),
        "billable_since": {**date_time(), "description": "The window rounded to 15 minutes."},
        "billable_until": date_time(),
        "sample_limit": count,
        "products": array(obj(row, tuple(row))),
    }
    return obj(properties, tuple(properties))
