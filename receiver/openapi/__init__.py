"""The OpenAPI description of the HTTP interface, served at /openapi.json.

Plain dicts built by small helpers (`blocks`), one module per part of the interface: the
providers' callbacks (`callbacks/`), the operators' read side (`admin`, its answers in
`views`), operations (`ops`), and the named schemas (`components`). Limits and enums come
from the code that enforces them; tests/test_fuzz.py checks that the document lists exactly
the app's routes and fuzzes every operation against the real app, validating each answer
against this document; tests/test_openapi.py holds the schemas to the code they describe.
"""

from __future__ import annotations

from receiver.openapi import admin, components, events, ops, stats
from receiver.openapi.blocks import ADMIN, CALLBACKS, OPS, Schema
from receiver.openapi.callbacks import meta, telnyx, twilio, verihubs


def document(metrics: bool = True) -> Schema:
    """The public listener's interface; `metrics` False: /metrics (and /metrics/shared) are
    on METRICS_PORT."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "OTP delivery tracker",
            "version": "1",
            "description": (
                "Receives delivery-status callbacks of OTP and messaging providers (Verihubs, "
                "Telnyx, Meta WhatsApp Cloud API, Twilio), stores them through Redis and answers "
                "operators' questions about messages and billing. Every refusal answers "
                '`{"error": "..."}`; every refused callback is counted in '
                "`otp_callbacks_rejected_total{reason}`."
            ),
        },
        "tags": [
            {"name": CALLBACKS, "description": "Provider callbacks (webhooks)."},
            {"name": ADMIN, "description": "Operators' read side; a bearer token."},
            {"name": OPS, "description": "Health, readiness, metrics, this document."},
        ],
        "paths": {k: v for k, v in paths().items() if metrics or not k.startswith("/metrics")},
        # What the tracker sends to the application (FORWARD_URL), not what it serves.
        "webhooks": events.webhooks_section(),
        "components": {
            "schemas": components.schemas(),
            "securitySchemes": admin.security_schemes(),
        },
    }


def paths() -> Schema:
    return {
        "/callbacks/verihubs/{product}/{token}": verihubs.path_item(),
        "/callbacks/telnyx": {"post": telnyx.callback()},
        "/callbacks/meta": {"get": meta.subscribe(), "post": meta.callback()},
        "/callbacks/twilio": {"post": twilio.callback()},
        "/messages": {"get": admin.messages()},
        "/messages/{provider}/{message_id}": {"get": admin.message()},
        "/billing": {"get": admin.billing()},
        "/stats": {"get": stats.stats()},
        "/metrics": {"get": ops.metrics()},
        "/metrics/shared": {"get": ops.shared_metrics()},
        "/healthz": {"get": ops.healthz()},
        "/readyz": {"get": ops.readyz()},
        "/openapi.json": {"get": ops.openapi()},
    }
