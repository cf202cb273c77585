"""The OpenAPI description of the HTTP interface, served at /openapi.json.

Plain dicts built by small helpers. Limits and enums come from the code that enforces them;
tests/test_fuzz.py checks that the document lists exactly the app's routes and fuzzes every
operation against the real app, validating each answer against this document.
"""

from __future__ import annotations

from typing import Any

from core import model, products
from core.settings import PROVIDERS
from receiver.providers import fields, meta, telnyx, twilio, verihubs

Schema = dict[str, Any]

ERROR = "#/components/schemas/Error"
ACCEPTED = "#/components/schemas/Accepted"
CALLBACKS = "callbacks"
ADMIN = "admin"
OPS = "operations"


def document() -> Schema:
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
        "paths": paths(),
        "components": {"schemas": schemas(), "securitySchemes": security_schemes()},
    }


def paths() -> Schema:
    return {
        "/callbacks/verihubs/{product}/{token}": _verihubs_path(),
        "/callbacks/telnyx": {"post": _telnyx()},
        "/callbacks/meta": {"get": _meta_subscribe(), "post": _meta_callback()},
        "/callbacks/twilio": {"post": _twilio()},
        "/messages/{provider}/{message_id}": {"get": _message()},
        "/billing": {"get": _billing()},
        "/metrics": {"get": _metrics()},
        "/healthz": {"get": _probe("healthz", "The process is up.", "ok")},
        "/readyz": {"get": _readyz()},
        "/openapi.json": {"get": _openapi()},
    }


# Building blocks.


def ref(target: str) -> Schema:
    return {"$ref": target}


def string(description: str | None = None, **keywords: Any) -> Schema:
    schema: Schema = {"type": "string", **keywords}
    if description:
        schema["description"] = description
    return schema


def obj(properties: Schema, required: tuple[str, ...] = (), **keywords: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, **keywords}
    if required:
        schema["required"] = list(required)
    return schema


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def message_id(description: str) -> Schema:
    return string(
        description, minLength=1, maxLength=fields.MAX_ID, pattern=f"^{fields.ID_RE.pattern}$"
    )


def status_name(description: str, known: tuple[str, ...] = ()) -> Schema:
    if known:
        description += f" Known: {', '.join(known)}; any other name is recorded as unknown."
    return string(description, pattern=f"^{fields.NAME_RE.pattern}$")


def parameter(where: str, name: str, schema: Schema, description: str, **extra: Any) -> Schema:
    required = extra.pop("required", where == "path")
    return {
        "name": name,
        "in": where,
        "required": required,
        "description": description,
        "schema": schema,
        **extra,
    }


def json_content(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def body(content: Schema, description: str, required: bool = True) -> Schema:
    return {"description": description, "required": required, "content": content}


def ok(description: str, content: Schema) -> Schema:
    return {"description": description, "content": content}


def error(description: str, headers: Schema | None = None) -> Schema:
    answer: Schema = {"description": description, "content": json_content(ref(ERROR))}
    if headers:
        answer["headers"] = headers
    return answer


def unavailable(description: str) -> Schema:
    retry_after = {
        "description": "Seconds to wait before retrying (RETRY_AFTER).",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
    return error(description, {"Retry-After": retry_after})


def operation(operation_id: str, tag: str, summary: str, responses: Schema, **extra: Any) -> Schema:
    return {
        "operationId": operation_id,
        "tags": [tag],
        "summary": summary,
        **extra,
        "responses": responses,
    }


# Answers shared by the callback endpoints.

BAD_REQUEST = (
    "A missing or ill-formed field: message id (1 to 128 of `A-Z a-z 0-9 . _ : = + / -`), "
    "status, a body that is not form or JSON, JSON nested deeper than MAX_JSON_DEPTH."
)
FORBIDDEN = "The source address is outside the provider's *_ALLOWED_NETWORKS."
CLOSED = "The provider's secret is not configured: its endpoint is closed."
UNSIGNED = "The signature is missing or does not match (nothing was stored)."
TOO_LARGE = "The body is over MAX_BODY_BYTES."
NOT_STORED = (
    "Redis is unreachable or the backlog is over MAX_BACKLOG: nothing was stored, retry "
    "after Retry-After seconds."
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


# Verihubs.


def _verihubs_path() -> Schema:
    products_ = [name for provider, name in products.PRODUCTS if provider == verihubs.PROVIDER]
    return {
        "parameters": [
            parameter("path", "product", string(enum=products_), "The Verihubs product."),
            parameter(
                "path",
                "token",
                string(minLength=1),
                "CALLBACK_TOKEN: the secret part of the callback URL (wrong: 404).",
            ),
        ],
        "get": _verihubs("verihubsCallback", required=True),
        "post": _verihubs(
            "verihubsCallbackPost",
            required=False,
            requestBody=body(
                {
                    "application/x-www-form-urlencoded": {"schema": _verihubs_form(STATUS_TEXT)},
                    "application/json": {
                        "schema": _verihubs_form({"oneOf": [_status_code(), STATUS_TEXT]})
                    },
                },
                "The same fields as a form or a JSON object; the query string wins.",
                required=False,
            ),
        ),
    }


def _verihubs(operation_id: str, *, required: bool, **extra: Any) -> Schema:
    where = "" if required else " (or in the body)"
    return operation(
        operation_id,
        CALLBACKS,
        "A Verihubs WhatsApp OTP, WhatsApp Message or SMS OTP callback.",
        callback_responses(
            signed=False,
            with_body="requestBody" in extra,
            not_found=f"Wrong token, unknown product, or: {CLOSED}",
        ),
        parameters=[
            parameter(
                "query",
                "session_id",
                message_id("The message id."),
                f"The message id{where}.",
                required=required,
            ),
            parameter(
                "query",
                "status",
                _status_code(),
                f"The product's status code{where}.",
                required=required,
            ),
        ],
        **extra,
    )


def _status_code() -> Schema:
    return {"type": "integer", "minimum": 0, "maximum": verihubs.MAX_CODE}


def _verihubs_form(status: Schema) -> Schema:
    return obj(
        {"session_id": message_id("The message id."), "status": status},
        additionalProperties=True,
    )


STATUS_TEXT = string("The status code, 0 to 99999.", pattern="^[0-9]{1,5}$")


# Telnyx.


def _telnyx() -> Schema:
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


def _telnyx_event() -> Schema:
    payload = obj(
        {
            "id": message_id("The verification id: the message id."),
            "type": string(f"The channel: {', '.join(products.TELNYX_CHANNELS)} (else other)."),
            "delivery_status": string(),
            "status": string("`accepted` completes a verification as verified."),
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


# Meta WhatsApp Cloud API.


def _meta_subscribe() -> Schema:
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


def _meta_callback() -> Schema:
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


def _meta_notification() -> Schema:
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


def _meta_status() -> Schema:
    pricing = obj(
        {
            "billable": {"type": "boolean", "description": "Meta's own billing flag."},
            "category": string(),
            "pricing_model": string(),
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


# Twilio.


def _twilio() -> Schema:
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
            {"application/x-www-form-urlencoded": {"schema": _twilio_form()}},
            "The status callback's form fields (all of them are signed).",
        ),
    )


def _twilio_form() -> Schema:
    return obj(
        {
            "MessageSid": message_id("The message id."),
            "MessageStatus": status_name("The status.", tuple(twilio.STATUS_CODES)),
            "ErrorCode": string(),
            "From": string("`whatsapp:...` for WhatsApp (else SMS)."),
            "To": string(),
        },
        ("MessageSid", "MessageStatus"),
        additionalProperties=string(),
    )


# Operators.

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


def _message() -> Schema:
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


def _billing() -> Schema:
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
            parameter("query", "from", _date(), "First day (default: 30 days before to)."),
            parameter("query", "to", _date(), "Last day (default: today, UTC)."),
        ],
        security=ADMIN_SECURITY,
    )


# Operations.


def _metrics() -> Schema:
    text = {"text/plain": {"schema": string("Prometheus text exposition format.")}}
    return operation("metrics", OPS, "Prometheus metrics.", {"200": ok("The metrics.", text)})


def _probe(operation_id: str, summary: str, status: str, **responses: Schema) -> Schema:
    answer = obj({"status": string(enum=[status])}, ("status",))
    return operation(
        operation_id,
        OPS,
        summary,
        {"200": ok(summary, json_content(answer)), **responses},
    )


def _readyz() -> Schema:
    return _probe("readyz", "Redis answers.", "ready", **{"503": unavailable("Redis is down.")})


def _openapi() -> Schema:
    answer = ok("An OpenAPI 3.0 document.", json_content({"type": "object"}))
    return operation("openapi", OPS, "This document.", {"200": answer})


# Components.


def schemas() -> Schema:
    return {
        "Error": obj({"error": string("What was wrong.")}, ("error",)),
        "Accepted": obj(
            {
                "status": string(enum=["accepted"]),
                "events": {"type": "integer", "minimum": 0, "description": "Events stored."},
            },
            ("status", "events"),
        ),
        "TelnyxEvent": _telnyx_event(),
        "MetaNotification": _meta_notification(),
        "MetaStatus": _meta_status(),
        "Message": _message_view(),
        "Billing": _billing_view(),
    }


def _message_view() -> Schema:
    states = [*(s.value for s in model.Status), model.NO_STATE]
    seen = obj(
        {"status": string(enum=[s.value for s in model.Status]), "first_seen": _time()},
        ("status", "first_seen"),
    )
    unknown = obj({"code": {"type": "integer"}, "first_seen": _time()}, ("code", "first_seen"))
    anomalies = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1}}
    properties = {
        "provider": string(),
        "message_id": string(),
        "product": string(),
        "state": string(enum=states),
        "billable": {"type": "boolean"},
        "first_seen": _time(),
        "statuses": array(seen),
        "unknown": array(unknown),
        "anomalies": anomalies,
    }
    return obj(properties, tuple(properties))


def _date() -> Schema:
    return string(format="date")


def _time() -> Schema:
    return string(format="date-time")


def _billing_view() -> Schema:
    day = obj(
        {
            "day": _date(),
            "provider": string(),
            "product": string(),
            "billable": {"type": "integer"},
        },
        ("day", "provider", "product", "billable"),
    )
    return obj(
        {"from": _date(), "to": _date(), "days": array(day)},
        ("from", "to", "days"),
    )
