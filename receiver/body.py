"""Reading request bodies within a bound."""

from __future__ import annotations

from urllib.parse import parse_qsl

import orjson
from starlette.requests import ClientDisconnect, Request

from receiver.errors import Rejected


async def read(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect as exc:
        # Nobody hears the answer, but the metrics must not count it as a server error.
        raise Rejected("client_disconnected", "the client went away mid-body") from exc
    return b"".join(chunks)


def _too_large(limit: int) -> Rejected:
    return Rejected("body_too_large", f"request body is over {limit} bytes", 413)


def form_fields(body: bytes, content_type: str) -> dict[str, str]:
    """Flat string fields of a form or JSON object body; anything else yields nothing."""
    if not body.strip():
        return {}
    try:
        text = body.decode()
        if "json" in content_type:
            # orjson refuses absurd nesting with a JSONDecodeError (json raises RecursionError).
            data = orjson.loads(body)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            return {str(k): str(v) for k, v in data.items() if isinstance(v, str | int)}
        # Blank values are kept: Twilio signs them too.
        return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=100))
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise Rejected("invalid_body", "request body is not valid JSON or form data") from exc
