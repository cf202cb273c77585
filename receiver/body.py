"""Reading request bodies within a bound."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import TypeVar
from urllib.parse import parse_qsl

import orjson
from starlette.requests import ClientDisconnect, Request

from receiver.errors import Rejected
from receiver.providers import fields


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


# Larger bodies are parsed in a worker thread: the event loop goes on answering other
# requests meanwhile (it takes the GIL back within sys.getswitchinterval(), 5 ms). Only an
# authenticated Meta batch gets this big: the other providers' limits are below it.
OFF_LOOP_BYTES = 64 * 1024
T = TypeVar("T")


async def parsed(raw: bytes, parse: Callable[[bytes], T]) -> T:
    if len(raw) <= OFF_LOOP_BYTES:
        return parse(raw)
    return await asyncio.to_thread(parse, raw)


def form_fields(body: bytes, content_type: str, max_depth: int) -> dict[str, str]:
    """The top-level fields of a form or JSON object body, as strings."""
    if not body.strip():
        return {}
    if "json" in content_type:
        data = fields.json_object(body, max_depth)
        # Every value but null as text (non-strings as JSON writes them): a status of 1.5,
        # true or [1] is then refused as not an integer, not as missing.
        return {
            str(k): v if isinstance(v, str) else orjson.dumps(v).decode()
            for k, v in data.items()
            if v is not None
        }
    try:
        # Blank values are kept: Twilio signs them too.
        pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=100)
    except ValueError as exc:  # UnicodeDecodeError too
        raise Rejected("invalid_body", "request body is not valid form data") from exc
    return unique(pairs)


def unique(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Fields as a mapping; a field given twice (`status=1&status=2`) is ambiguous: 400."""
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise Rejected("duplicate_field", f"{name[:40]} is given more than once")
        fields[name] = value
    return fields
