"""Telnyx Verify: an Ed25519-signed JSON webhook."""

from __future__ import annotations

from core import products
from receiver.openapi.blocks import (
    CALLBACKS,
    Schema,
    body,
    json_content,
    message_id,
    obj,
    operation,
    ref,
    status_name,
    string,
)
from receiver.openapi.callbacks.answers import callback_responses, signature
from receiver.providers import telnyx


def callback() -> Schema:
    return operation(
        "telnyxCallback",
        CALLBACKS,
        "A Telnyx Verify webhook, Ed25519-signed (TELNYX_PUBLIC_KEY).",
        callback_responses(signed=True, with_body=True),
        parameters=[
            signature(
                telnyx.SIGNATURE,
                "Base64 Ed25519 signature of `{telnyx-timestamp}|{raw body}`.",
                string(format="byte"),
            ),
            signature(
                telnyx.TIMESTAMP,
                "Unix time of the signature, within TELNYX_TOLERANCE seconds (else 401).",
                string(pattern="^[0-9]{1,12}$"),
            ),
        ],
        requestBody=body(json_content(ref("#/components/schemas/TelnyxEvent")), "The event."),
    )


def event() -> Schema:
    payload = obj(
        {
            "id": message_id("The verification id: the message id."),
            "type": string(f"The channel: {', '.join(products.TELNYX_CHANNELS)} (else other)."),
            "delivery_status": string(),
            "status": string(
                "Of verification.complete: "
                + ", ".join(f"`{name}`" for name in telnyx.COMPLETION_CODES)
                + " (accepted: verified; invalid, expired: unverified; error: undelivered)."
            ),
        },
        ("id",),
    )
    data = obj(
        {
            "event_type": status_name(
                "The event.", (*telnyx.EVENT_CODES, *sorted(telnyx.COMPLETED))
            ),
            "id": string(),
            "occurred_at": string("When it happened (else: receipt time).", format="date-time"),
            "record_type": string(),
            "payload": payload,
        },
        ("event_type", "payload"),
    )
    return obj({"data": data, "meta": {"type": "object"}}, ("data",))
