"""Answers and signature headers shared by the callback endpoints."""

from __future__ import annotations

from receiver.openapi.blocks import (
    ACCEPTED,
    Schema,
    error,
    json_content,
    ok,
    parameter,
    ref,
    string,
    unavailable,
)

BAD_REQUEST = (
    "A missing or ill-formed field: message id (1 to 128 of `A-Z a-z 0-9 . _ : = + / -`), "
    "status, a body that is not form or JSON, JSON nested deeper than MAX_JSON_DEPTH, a "
    "query or form field given twice."
)
FORBIDDEN = "The source address is outside the provider's *_ALLOWED_NETWORKS."
CLOSED = "The provider's secret is not configured: its endpoint is closed."
UNSIGNED = "The signature is missing or does not match (nothing was stored)."
TOO_LARGE = "The body is over the provider's limit (<PROVIDER>_MAX_BODY_BYTES)."
NOT_STORED = (
    "Redis is unreachable, the backlog is over MAX_BACKLOG, Redis is nearly full "
    "(REDIS_MEMORY_LIMIT) or may evict: nothing was stored. Or fewer than REDIS_MIN_REPLICAS "
    "replicas confirmed the batch in time: stored and applied, not acknowledged. Either way, "
    "retry after Retry-After seconds (a retry is absorbed as a duplicate)."
)


def callback_responses(*, signed: bool, with_body: bool, not_found: str = CLOSED) -> Schema:
    responses: Schema = {
        "200": ok("The callback's events are stored.", json_content(ref(ACCEPTED))),
        "400": error(BAD_REQUEST),
    }
    if signed:
        responses["401"] = error(UNSIGNED)
    responses["403"] = error(FORBIDDEN)
    responses["404"] = error(not_found)
    if with_body:
        responses["413"] = error(TOO_LARGE)
    responses["503"] = unavailable(NOT_STORED)
    return responses


def signature(name: str, description: str, schema: Schema | None = None) -> Schema:
    return parameter("header", name, schema or string(), description, required=True)
