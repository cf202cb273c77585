"""Twilio: a message status callback, a form signed over PUBLIC_URL."""

from __future__ import annotations

from receiver.openapi.blocks import (
    CALLBACKS,
    Schema,
    body,
    message_id,
    obj,
    operation,
    status_name,
    string,
)
from receiver.openapi.callbacks.answers import callback_responses, signature
from receiver.providers import twilio


def callback() -> Schema:
    return operation(
        "twilioCallback",
        CALLBACKS,
        "A Twilio message status callback, signed over PUBLIC_URL and the form fields.",
        callback_responses(signed=True, with_body=True),
        parameters=[
            signature(
                twilio.SIGNATURE,
                "Base64 HMAC-SHA1 of the public URL and the sorted fields (TWILIO_AUTH_TOKEN).",
            )
        ],
        requestBody=body(
            {"application/x-www-form-urlencoded": {"schema": form()}},
            "The status callback's form fields (all of them are signed).",
        ),
    )


def form() -> Schema:
    return obj(
        {
            "MessageSid": message_id("The message id."),
            "MessageStatus": status_name("The status.", tuple(twilio.STATUS_CODES)),
            "ErrorCode": string(),
            "From": string("`whatsapp:...` for WhatsApp (else SMS), unless ChannelPrefix says."),
            "ChannelPrefix": string("`whatsapp` or `rcs`: the channel, where Twilio sends it."),
            "To": string(),
        },
        ("MessageSid", "MessageStatus"),
        additionalProperties=string(),
    )
