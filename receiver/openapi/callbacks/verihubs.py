"""Verihubs: one path for its three products, GET with a query or POST with a body too."""

from __future__ import annotations

from typing import Any

from core import products
from receiver.openapi.blocks import (
    CALLBACKS,
    Schema,
    body,
    message_id,
    obj,
    operation,
    parameter,
    string,
)
from receiver.openapi.callbacks.answers import CLOSED, callback_responses
from receiver.providers import verihubs

STATUS_TEXT = string("The status code, 0 to 99999.", pattern="^[0-9]{1,5}$")


def path_item() -> Schema:
    names = [name for provider, name in products.PRODUCTS if provider == verihubs.PROVIDER]
    return {
        "parameters": [
            parameter("path", "product", string(enum=names), "The Verihubs product."),
            parameter(
                "path",
                "token",
                string(minLength=1),
                "CALLBACK_TOKEN: the secret part of the callback URL (wrong: 404).",
            ),
        ],
        "get": callback("verihubsCallback", required=True),
        "post": callback(
            "verihubsCallbackPost",
            required=False,
            requestBody=body(
                {
                    "application/x-www-form-urlencoded": {"schema": form(STATUS_TEXT)},
                    "application/json": {"schema": form({"oneOf": [status_code(), STATUS_TEXT]})},
                },
                "The same fields as a form or a JSON object; the query string wins.",
                required=False,
            ),
        ),
    }


def callback(operation_id: str, *, required: bool, **extra: Any) -> Schema:
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
                status_code(),
                f"The product's status code{where}.",
                required=required,
            ),
        ],
        **extra,
    )


def status_code() -> Schema:
    return {"type": "integer", "minimum": 0, "maximum": verihubs.MAX_CODE}


def form(status: Schema) -> Schema:
    return obj(
        {"session_id": message_id("The message id."), "status": status},
        additionalProperties=True,
    )
