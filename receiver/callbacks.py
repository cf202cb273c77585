"""Provider callback endpoints: authenticate, parse, group-commit, answer."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from receiver import auth, body, verihubs
from receiver.context import Context
from receiver.http_metrics import annotate
from workers.store import now_ms


async def verihubs_callback(request: Request) -> JSONResponse:
    ctx: Context = request.app.state.ctx
    params = request.path_params
    auth.check_path_token(
        params["token"], ctx.settings.callback_token, ctx.settings.allow_unauthenticated_callbacks
    )
    fields = dict(request.query_params)
    if request.method == "POST":
        raw = await body.read(request, ctx.settings.max_body_bytes)
        fields = {**body.form_fields(raw, request.headers.get("content-type", "")), **fields}
    event = verihubs.parse(params["product"], fields, now_ms())
    annotate(
        request.scope,
        provider=event.provider,
        product=event.product,
        message_id=event.message_id,
        code=event.code,
    )
    await ctx.batcher.submit(event)
    return JSONResponse({"status": "accepted"})
