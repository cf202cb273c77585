"""Liveness, readiness and the Prometheus endpoint."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from redis import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from receiver import openapi
from receiver.context import Context
from receiver.errors import Unavailable


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def readyz(request: Request) -> JSONResponse:
    ctx: Context = request.app.state.ctx
    try:
        ctx.redis.ping()
    except RedisError as exc:
        raise Unavailable("not_ready", "redis is unreachable") from exc
    return JSONResponse({"status": "ready"})


async def metrics(request: Request) -> Response:
    """This process's own families (HTTP requests, admin refusals): scrape every process.

    With METRICS_TOKEN, a bearer token is required (checked before anything is read)."""
    ctx = _scraped(request)
    return Response(await ctx.metrics.body(), media_type=CONTENT_TYPE_LATEST)


async def shared_metrics(request: Request) -> Response:
    """The families Redis holds (callbacks, billing, latencies, queue, Redis): the same on
    every process, so scraped from one target only (a load-balanced address will do)."""
    ctx = _scraped(request)
    if ctx.shared.stale():  # this process's refusals, counted in memory, are in the page
        await ctx.batcher.flush_counts()
    return Response(await ctx.shared.body(), media_type=CONTENT_TYPE_LATEST)


def _scraped(request: Request) -> Context:
    ctx: Context | None = getattr(request.app.state, "ctx", None)
    if ctx is None:  # the METRICS_PORT listener, before the public app has started
        raise Unavailable("not_ready", "the receiver is starting")
    ctx.guard.check_metrics(request, ctx.credentials.metrics_tokens)
    return ctx


async def openapi_document(request: Request) -> JSONResponse:
    settings = request.app.state.settings
    return JSONResponse(openapi.document(metrics=settings.metrics_port is None))
