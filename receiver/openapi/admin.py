"""The operators' read side: one message, billing; behind the admin bearer token."""

from __future__ import annotations

from core.read import STATES
from core.settings import PROVIDERS
from receiver.admin import (
    DEFAULT_BILLING_DAYS,
    DEFAULT_PAGE,
    FORMATS,
    MAX_BILLING_DAYS,
    MAX_CURSOR,
    MAX_PAGE,
    PRODUCT_NAMES,
)
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


def messages() -> Schema:
    return operation(
        "searchMessages",
        ADMIN,
        "The messages still tracked, newest first (by their first callback's receipt), from"
        " the search index: filtered by provider, product, current state and time.",
        admin_responses(
            ok("A page of messages.", json_content(ref("#/components/schemas/MessagePage"))),
            **{
                "400": error(
                    "An unknown provider, product or state; a time that is neither a duration"
                    " nor an ISO 8601 time with offset; since not before until; a limit out"
                    f" of 1..{MAX_PAGE}; a cursor this API did not return."
                )
            },
        ),
        parameters=[
            parameter("query", "provider", _names(PROVIDERS), "Provider(s), comma-separated."),
            parameter("query", "product", _names(PRODUCT_NAMES), "Product(s), comma-separated."),
            parameter("query", "state", _names(STATES), "Current state(s), comma-separated."),
            parameter("query", "since", string(maxLength=64), SINCE),
            parameter("query", "until", string(maxLength=64), "Received before (as since)."),
            parameter(
                "query",
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE},
                "Messages per page.",
            ),
            parameter("query", "cursor", string(maxLength=MAX_CURSOR), "next_cursor of a page."),
        ],
        security=ADMIN_SECURITY,
    )


def _names(known: tuple[str, ...]) -> Schema:
    return string(pattern=f"^({'|'.join(known)})(,({'|'.join(known)}))*$")


SINCE = (
    "First callback received at or after: a duration before now (90s, 15m, 1h, 7d, 2w) or an"
    " ISO 8601 time with offset."
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
