"""The operators' read side: one message, billing; behind the admin bearer token."""

from __future__ import annotations

from core.settings import PROVIDERS
from receiver.admin import DEFAULT_BILLING_DAYS, FORMATS, MAX_BILLING_DAYS
from receiver.openapi.blocks import (
    ADMIN,
    Schema,
    date,
    error,
    json_content,
    message_id,
    ok,
    operation,
    parameter,
    ref,
    string,
    throttled,
    unavailable,
)

ADMIN_SECURITY = [{"bearerAuth": []}]
# Without METRICS_TOKEN, /metrics asks for nothing.
METRICS_SECURITY = [{"metricsAuth": []}, {}]


def security_schemes() -> Schema:
    return {
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": "ADMIN_TOKEN (any one of its comma-separated tokens).",
        },
        "metricsAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": "METRICS_TOKEN, when set (any one of its comma-separated tokens).",
        },
    }


def admin_responses(ok_answer: Schema, **more: Schema) -> Schema:
    return {
        "200": ok_answer,
        **more,
        "401": error("The bearer token is missing or wrong."),
        "403": error("ADMIN_TOKEN is not configured."),
        "429": throttled(),
        "503": unavailable("Redis is unreachable."),
    }


def message() -> Schema:
    return operation(
        "getMessage",
        ADMIN,
        "One message's state, statuses seen, billable flag, unknown codes and anomalies.",
        admin_responses(
            ok("The message.", json_content(ref("#/components/schemas/Message"))),
            **{
                "400": error(BAD_ID),
                "404": error("An unknown provider, or no callback was seen for this message."),
            },
        ),
        parameters=[
            parameter("path", "provider", string(enum=list(PROVIDERS)), "The provider."),
            parameter("path", "message_id", message_id(ID), "The provider's message id."),
        ],
        security=ADMIN_SECURITY,
    )


def billing() -> Schema:
    days = f"the {DEFAULT_BILLING_DAYS} days ending today by default, at most {MAX_BILLING_DAYS}"
    csv = {
        "schema": string("Columns: day,provider,product,billable."),
        "headers": {"Content-Disposition": {"schema": string("attachment; filename=...")}},
    }
    return operation(
        "getBilling",
        ADMIN,
        "Billable messages per day of a time zone, provider and product (JSON, or CSV).",
        admin_responses(
            ok(
                "Billable messages per day.",
                {**json_content(ref("#/components/schemas/Billing")), "text/csv": csv},
            ),
            **{
                "400": error(
                    f"A date that is not YYYY-MM-DD, a month that is not YYYY-MM, an unknown"
                    f" zone or format, or a wrong range ({days})."
                )
            },
        ),
        parameters=[
            parameter("query", "from", date(), "First day (default: 30 days before to)."),
            parameter("query", "to", date(), "Last day (default: today in the zone)."),
            parameter("query", "month", string(pattern="^[0-9]{4}-[0-9]{2}$"), MONTH),
            parameter("query", "tz", string(maxLength=64), "IANA zone (BILLING_TIMEZONE)."),
            parameter("query", "format", string(enum=list(FORMATS)), FORMAT),
        ],
        security=ADMIN_SECURITY,
    )


ID = "As the provider's callbacks give it."
BAD_ID = (
    "A message id that is empty, over 128 characters, or has others than"
    " `A-Z a-z 0-9 . _ : = + / -`."
)
MONTH = "A whole month, YYYY-MM, instead of from and to."
FORMAT = "json or csv; wins over the Accept header (text/csv)."
