"""The events the tracker sends to the application (`webhooks`): FORWARD_URL's side.

The examples are built by core.webhooks itself, so the document shows the exact bytes sent.
"""

from __future__ import annotations

import orjson

from core import webhooks
from core.model import Status
from core.webhooks import OutboxEvent
from receiver.openapi.blocks import Schema, date_time, obj, parameter, ref, string

EVENT = "#/components/schemas/Event"
STATES = [s.value for s in Status]


def event() -> Schema:
    data = obj(
        {
            "provider": string("The provider that sent the callbacks."),
            "product": string("The message's product (that of its first callback)."),
            "message_id": string("The provider's id of the message (session_id, wamid, ...)."),
            "previous_state": {
                **string("The state before; null for the message's first.", enum=STATES),
                "nullable": True,
            },
            "state": string(
                "The canonical state now (for a timeout: the state it is stuck in).",
                enum=STATES,
            ),
            "billable": {"type": "boolean", "description": "Whether the message is billed now."},
            "sequence": {
                "type": "integer",
                "minimum": 1,
                "description": "Per message, +1 for each event: order them by it (deliveries"
                " may arrive out of order); restarts after MESSAGE_TTL without callbacks.",
            },
        },
        ("provider", "product", "message_id", "previous_state", "state", "billable", "sequence"),
    )
    return obj(
        {
            "id": string(
                "The event id, also `webhook-id`: the same on every retry and replay; use it"
                " to drop duplicates (delivery is at least once)."
            ),
            "type": string(
                "`message.<new state>` for a change of state, `message.delivery_timeout` when"
                " a requested or sent message had no delivery evidence nor final outcome"
                " within DELIVERY_TIMEOUT (once per message: start a fallback).",
                enum=list(webhooks.EVENT_TYPES),
            ),
            "timestamp": {
                **date_time(),
                "description": "When it happened: the provider's time of the callback where"
                " it sends one (else our receipt), or the timeout's deadline.",
            },
            "data": data,
        },
        ("id", "type", "timestamp", "data"),
    )


def _example(kind: str, previous: str, state: str, sequence: int, billable: str) -> Schema:
    f = webhooks.OutboxField
    fields = {
        f.TYPE: kind,
        f.PROVIDER: "verihubs",
        f.PRODUCT: "whatsapp-otp",
        f.MESSAGE_ID: "7c1d0c9e-8a9b-4f51-9d43-2b1e6f0a9c11",
        f.PREVIOUS: previous,
        f.STATE: state,
        f.BILLABLE: billable,
        f.AT: str(1_764_590_400_000 + sequence * 1500),
        f.SEQUENCE: str(sequence),
    }
    entry = OutboxEvent.from_entry(f"{1_764_590_400_000 + sequence * 1500}-0", fields)
    return {"value": orjson.loads(entry.body())}


def examples() -> Schema:
    return {
        "sent": _example(webhooks.STATE_TYPE_FIELD, "none", "sent", 1, "1"),
        "delivered": _example(webhooks.STATE_TYPE_FIELD, "sent", "delivered", 2, "1"),
        "failed": _example(webhooks.STATE_TYPE_FIELD, "sent", "failed", 2, "0"),
        "delivery_timeout": _example(webhooks.TIMEOUT_TYPE_FIELD, "sent", "sent", 2, "1"),
    }


def _header(name: str, description: str) -> Schema:
    return parameter("header", name, string(), description, required=True)


def webhooks_section() -> Schema:
    return {
        "messageEvent": {
            "post": {
                "operationId": "messageEvent",
                "summary": "A message changed state, or its delivery timed out",
                "description": (
                    "POSTed to each FORWARD_URL, signed per Standard Webhooks"
                    " (https://www.standardwebhooks.com/): verify with the `standardwebhooks`"
                    " library and the FORWARD_SECRET (`whsec_...`). One event per change of"
                    " the message's canonical state (never for a duplicate or a late"
                    " callback), plus `message.delivery_timeout`. At least once: any answer"
                    " but 2xx, or none within FORWARD_TIMEOUT, is retried with exponential"
                    " backoff (FORWARD_FIRST_RETRY, doubling, at most 2 h) for"
                    " FORWARD_RETRY_WINDOW (2 days), then kept for"
                    " `python -m workers.forward replay`. Redirects are not followed."
                ),
                "parameters": [
                    _header("webhook-id", "The event id (`evt_...`), as in the body."),
                    _header("webhook-timestamp", "Unix seconds of this attempt."),
                    _header(
                        "webhook-signature",
                        '`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`.',
                    ),
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref(EVENT), "examples": examples()}},
                },
                "responses": {
                    "2XX": {"description": "Received (the body of the answer is not read)."},
                },
            }
        }
    }
