"""The operators' read side: one message, billing; behind the admin bearer token."""

from __future__ import annotations

from core.settings import PROVIDERS
from receiver.openapi.blocks import (
    ADMIN,
    Schema,
    date,
    error,
    json_content,
    ok,
    operation,
    parameter,
    ref,
    string,
    unavailable,
)

ADMIN_SECURITY = [{"bearerAuth": []}]


def security_schemes() -> Schema:
    return {"bearerAuth": {"type": "http", "scheme": "bearer", "description": "ADMIN_TOKEN."}}


def admin_responses(ok_answer: Schema, **more: Schema) -> Schema:
    return {
        "200": ok_answer,
        **more,
        "401": error("The bearer token is missing or wrong."),
        "403": error("ADMIN_TOKEN is not configured."),
        "503": unavailable("Redis is unreachable."),
    }


def message() -> Schema:
    return operation(
        "getMessage",
        ADMIN,
        "One message's state, statuses seen, billable flag, unknown codes and anomalies.",
        admin_responses(
            ok("The message.", json_content(ref("#/components/schemas/Message"))),
            **{"404": error("No callback was seen for this message.")},
        ),
        parameters=[
            parameter("path", "provider", string(enum=list(PROVIDERS)), "The provider."),
            parameter("path", "message_id", string(minLength=1), "The provider's message id."),
        ],
        security=ADMIN_SECURITY,
    )


def billing() -> Schema:
    days = "the last 30 days by default, at most 366"
    return operation(
        "getBilling",
        ADMIN,
        "Billable messages per UTC day, provider and product (JSON, or CSV: Accept: text/csv).",
        admin_responses(
            ok(
                "Billable messages per day.",
                {
                    **json_content(ref("#/components/schemas/Billing")),
                    "text/csv": {"schema": string("Columns: day,provider,product,billable.")},
                },
            ),
            **{"400": error(f"A date that is not YYYY-MM-DD or a wrong range ({days}).")},
        ),
        parameters=[
            parameter("query", "from", date(), "First day (default: 30 days before to)."),
            parameter("query", "to", date(), "Last day (default: today, UTC)."),
        ],
        security=ADMIN_SECURITY,
    )
