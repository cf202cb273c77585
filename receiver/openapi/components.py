"""The named schemas under #/components/schemas."""

from __future__ import annotations

from receiver.openapi import events, stats, views
from receiver.openapi.blocks import Schema, obj, string
from receiver.openapi.callbacks import meta, telnyx


def schemas() -> Schema:
    return {
        "Error": obj({"error": string("What was wrong.")}, ("error",)),
        "Accepted": accepted(),
        "TelnyxEvent": telnyx.event(),
        "MetaNotification": meta.notification(),
        "MetaStatus": meta.status(),
        "Message": views.message(),
        "MessagePage": views.message_page(),
        "Billing": views.billing(),
        "Event": events.event(),
        "Stats": stats.schema(),
    }


def accepted() -> Schema:
    return obj(
        {
            "status": string(enum=["accepted"]),
            "events": {"type": "integer", "minimum": 0, "description": "Events stored."},
        },
        ("status", "events"),
    )
