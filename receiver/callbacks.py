"""Provider callback endpoints: source check, authenticate, parse, group-commit, answer.

Nothing is parsed before the request is authenticated; the provider modules hold the
protocol logic (sans I/O), these functions only do the I/O around them.
"""

from __future__ import annotations

import hashlib
import time
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.types import Scope

from core.clock import now_ms
from core.events import Event
from receiver import body
from receiver.context import Context
from receiver.credentials import closed
from receiver.errors import Rejected
from receiver.http_metrics import annotate
from receiver.providers import fields, meta, telnyx, twilio, verihubs


def _check_source(request: Request, provider: str) -> Context:
    """Refuse a source outside the provider's allowlist (403); the app's context otherwise."""
    ctx: Context = request.app.state.ctx
    annotate(request.scope, provider=provider)
    ctx.sources.check(provider, request.client.host if request.client else None)
    return ctx


async def verihubs_callback(request: Request) -> JSONResponse:
    ctx = _check_source(request, verihubs.PROVIDER)
    if request.method == "HEAD":  # Starlette answers HEAD on GET routes: it must store nothing
        raise Rejected("method_not_allowed", "use GET or POST", 405)
    product = request.path_params["product"]
    _verihubs_token(ctx, product, request.path_params["token"])
    params = query_fields(request.scope)
    if request.method == "POST":
        raw = await body.read(request, ctx.settings.body_limits[verihubs.PROVIDER])
        content_type = request.headers.get("content-type", "")
        form = body.form_fields(raw, content_type, ctx.settings.max_json_depth)
        params = {**form, **params}
    return await _accept(request, [verihubs.parse(product, params, now_ms())])


async def verihubs_get(ctx: Context, scope: Scope, product: str, token: str) -> int:
    """A Verihubs GET callback from its ASGI scope alone (receiver.fast_path): the same steps
    as verihubs_callback's, without a Request; return the events accepted."""
    annotate(scope, provider=verihubs.PROVIDER)
    client = scope.get("client")
    ctx.sources.check(verihubs.PROVIDER, client[0] if client else None)
    _verihubs_token(ctx, product, token)
    event = verihubs.parse(product, query_fields(scope), now_ms())
    return await accept(scope, ctx, [event])


def _verihubs_token(ctx: Context, product: str, token: str) -> None:
    tokens = ctx.credentials.required(ctx.credentials.verihubs_tokens(product))
    if tokens is not None and not tokens.matches(token):
        raise Rejected("bad_token", "not found", 404)
    verihubs.check_product(product)


def query_fields(scope: Scope) -> dict[str, str]:
    """The query's fields, decoded as Starlette's QueryParams does (latin-1, blank values
    kept), without building one; a field given twice is refused (body.unique)."""
    query = scope["query_string"].decode("latin-1")
    if "%" in query or "+" in query:
        return body.unique(parse_qsl(query, keep_blank_values=True))
    # Nothing to unquote (what providers send): parse_qsl's own split, without its unquote
    # calls, a third of a callback's parsing time.
    fields = (field.partition("=") for field in query.split("&") if field)
    return body.unique((name, value) for name, _, value in fields)


async def telnyx_callback(request: Request) -> JSONResponse:
    ctx = _check_source(request, telnyx.PROVIDER)
    key = ctx.credentials.required(ctx.credentials.telnyx_key)
    if key is not None:
        telnyx.require_signature(request.headers)  # unsigned: nothing of the body is read
    raw = await body.read(request, ctx.settings.body_limits[telnyx.PROVIDER])
    if key is not None:
        telnyx.verify(key, raw, request.headers, time.time(), ctx.settings.telnyx_tolerance)
    data = fields.json_object(raw, ctx.settings.max_json_depth)
    return await _accept(request, [telnyx.parse(data, now_ms())])


async def meta_subscribe(request: Request) -> PlainTextResponse:
    ctx = _check_source(request, meta.PROVIDER)
    token = ctx.credentials.meta_verify_token
    if token is None:  # closed even when opted out: there is nothing to verify against
        raise closed()
    return PlainTextResponse(meta.handshake(request.query_params, str(token)))


async def meta_callback(request: Request) -> JSONResponse:
    ctx = _check_source(request, meta.PROVIDER)
    secret = ctx.credentials.required(ctx.credentials.meta_secret)
    if secret is not None:
        meta.require_signature(request.headers)  # unsigned: nothing of the body is read
    raw = await body.read(request, ctx.settings.body_limits[meta.PROVIDER])
    if secret is not None:
        meta.verify(str(secret), raw, request.headers)
    depth, received = ctx.settings.max_json_depth, now_ms()

    def events_of(raw: bytes) -> list[Event]:
        return meta.parse(fields.json_object(raw, depth), received)

    # A batch of many statuses is parsed off the event loop (body.parsed).
    return await _accept(request, await body.parsed(raw, events_of))


async def twilio_callback(request: Request) -> JSONResponse:
    ctx = _check_source(request, twilio.PROVIDER)
    validator = ctx.credentials.required(ctx.credentials.twilio)
    if validator is not None:
        twilio.require_signature(request.headers)  # unsigned: nothing of the body is read
    raw = await body.read(request, ctx.settings.body_limits[twilio.PROVIDER])
    # Parsed before the signature check (Twilio signs the form's fields, not the raw body):
    # its body limit keeps that parse short.
    form = body.form_fields(raw, "application/x-www-form-urlencoded", ctx.settings.max_json_depth)
    if validator is not None:
        twilio.verify(validator, _public_url(request, ctx), form, request.headers)
    return await _accept(request, [twilio.parse(form, now_ms())])


def _public_url(request: Request, ctx: Context) -> str:
    """The URL Twilio called: behind a proxy only configuration knows it."""
    if ctx.settings.public_url is None:
        return str(request.url)
    query = f"?{request.url.query}" if request.url.query else ""
    return ctx.settings.public_url.rstrip("/") + request.url.path + query


# Meta's wamid is base64 of a structure that holds the recipient's phone number: it is
# logged only as a digest (still enough to match log lines of the same message).
DIGESTED_IDS = frozenset({meta.PROVIDER})


def _loggable_id(event: Event) -> str:
    if event.provider not in DIGESTED_IDS:
        return event.message_id
    return "sha256:" + hashlib.sha256(event.message_id.encode()).hexdigest()[:16]


async def _accept(request: Request, events: list[Event]) -> JSONResponse:
    accepted = await accept(request.scope, request.app.state.ctx, events)
    return JSONResponse({"status": "accepted", "events": accepted})


async def accept(scope: Scope, ctx: Context, events: list[Event]) -> int:
    """Log fields, memory guard, group commit: return once the events are durably queued."""
    if len(events) == 1:
        e = events[0]
        annotate(scope, product=e.product, message_id=_loggable_id(e), code=e.code)
    else:
        annotate(scope, events=len(events))
    if events:
        ctx.memory.check()
        await ctx.batcher.submit(events)
    return len(events)
