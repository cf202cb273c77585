"""Meta WhatsApp Cloud API: the subscription handshake and the signed status webhook."""

from __future__ import annotations

from receiver.openapi.blocks import (
    CALLBACKS,
    Schema,
    array,
    body,
    error,
    json_content,
    message_id,
    obj,
    ok,
    operation,
    parameter,
    ref,
    status_name,
    string,
)
from receiver.openapi.callbacks.answers import FORBIDDEN, callback_responses, signature
from receiver.providers import meta


def subscribe() -> Schema:
    query = [
        ("hub.mode", string(enum=["subscribe"]), "Always `subscribe`."),
        ("hub.verify_token", string(), "META_VERIFY_TOKEN (else 403)."),
        (
            "hub.challenge",
            string(pattern=f"^[A-Za-z0-9]{{1,{meta.MAX_CHALLENGE}}}$"),
            "Echoed back as the answer.",
        ),
    ]
    return operation(
        "metaSubscribe",
        CALLBACKS,
        "Meta's subscription handshake: echoes hub.challenge for the right verify token.",
        {
            "200": ok("The challenge.", {"text/plain": {"schema": string()}}),
            "400": error("hub.challenge is not alphanumeric or is too long."),
            "403": error(f"Wrong mode or verify token, or: {FORBIDDEN}"),
            "404": error("META_VERIFY_TOKEN is not configured: the endpoint is closed."),
        },
        parameters=[
            parameter("query", name, schema, text, required=True) for name, schema, text in query
        ],
    )


def callback() -> Schema:
    return operation(
        "metaCallback",
        CALLBACKS,
        "A Meta WhatsApp Cloud API webhook: every entry[].changes[].value.statuses[] in it.",
        callback_responses(signed=True, with_body=True),
        parameters=[
            signature(
                meta.SIGNATURE,
                "`sha256=` and the hex HMAC-SHA256 of the raw body with META_APP_SECRET.",
                string(pattern="^sha256=[0-9a-f]{64}$"),
            )
        ],
        requestBody=body(
            json_content(ref("#/components/schemas/MetaNotification")),
            "A notification; changes without statuses (inbound messages) carry no event.",
        ),
    )


def notification() -> Schema:
    value = obj(
        {
            "messaging_product": string(),
            "metadata": {"type": "object"},
            "statuses": array(ref("#/components/schemas/MetaStatus")),
        }
    )
    change = obj({"field": string(), "value": value})
    entry = obj({"id": string(), "changes": array(change)})
    return obj({"object": string(), "entry": array(entry)})


def status() -> Schema:
    pricing = obj(
        {
            "billable": {
                "type": "boolean",
                "description": "Meta's billing flag (deprecated): read when type is absent.",
            },
            "type": string("`regular`: billable; `free_*`: free. Wins over billable."),
            "category": string(),
            "pricing_model": string("`CBP` (conversation pricing): not billed per message."),
        }
    )
    return obj(
        {
            "id": message_id("The wamid: the message id."),
            "status": status_name("The status.", tuple(meta.STATUS_CODES)),
            "timestamp": string(
                "Unix time in seconds (else: receipt time).", pattern="^[0-9]{1,12}$"
            ),
            "recipient_id": string(),
            "pricing": pricing,
        },
        ("id", "status"),
    )
