"""The receiver's app factory: `uvicorn --factory receiver.app:create_app`.

With METRICS_PORT set, the public app serves no /metrics nor /metrics/shared:
`create_metrics_app(app)` is the second listener that does, in the same process (it reads the
public app's registries and context), started by the launcher on METRICS_HOST:METRICS_PORT.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from prometheus_client import CollectorRegistry
from redis import Redis, RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from core import counters, logs, storage
from core.redis import connect
from core.settings import Settings, trusts_anyone
from receiver import admin, callbacks, console, ops, stats
from receiver.auth import Throttled
from receiver.context import Context
from receiver.errors import Rejected, Unavailable
from receiver.fast_path import VerihubsFastPath
from receiver.http_metrics import RequestLog, annotate

log = structlog.get_logger("receiver")
CALLBACK_ROUTES = "/callbacks/"
VERIHUBS_ROUTE = "/callbacks/verihubs/{product}/{token}"


# /metrics is per process (scrape every one); /metrics/shared is what Redis holds, the same
# on every process (scrape one target): see dashboards/prometheus/prometheus.yml.
METRICS = [Route("/metrics", ops.metrics), Route("/metrics/shared", ops.shared_metrics)]


def routes(settings: Settings) -> list[BaseRoute]:
    """The public listener's routes: /metrics only when it has no listener of its own."""
    metrics = METRICS if settings.metrics_port is None else []
    return [
        Route(
            VERIHUBS_ROUTE,
            callbacks.verihubs_callback,
            methods=["GET", "POST"],
        ),
        Route("/callbacks/telnyx", callbacks.telnyx_callback, methods=["POST"]),
        Route("/callbacks/meta", callbacks.meta_subscribe, methods=["GET"]),
        Route("/callbacks/meta", callbacks.meta_callback, methods=["POST"]),
        Route("/callbacks/twilio", callbacks.twilio_callback, methods=["POST"]),
        Route("/messages", admin.messages),
        Route("/messages/{provider}/{message_id:path}", admin.message),
        Route("/openapi.json", ops.openapi_document),
        Route("/billing", admin.billing),
        Route("/stats", stats.stats),
        *metrics,
        Route("/healthz", ops.healthz),
        Route("/readyz", ops.readyz),
        *console.routes(),
    ]


def create_app(
    settings: Settings | None = None, registry: CollectorRegistry | None = None
) -> Starlette:
    settings = settings or Settings.from_env()
    logs.configure(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        redis = connect(settings)
        _check_storage(redis, settings)
        app.state.ctx = ctx = Context.build(settings, redis, registry or CollectorRegistry())
        _warn_if_open(ctx)
        _warn_if_any_proxy_is_trusted(settings)
        guard = asyncio.create_task(ctx.memory.run())
        yield
        guard.cancel()
        await ctx.batcher.flush_counts()  # refusals still only counted in memory
        ctx.batcher.writer.close()
        await ctx.batcher.writer.aclose()
        redis.close()

    app = _starlette(settings, routes(settings), lifespan)
    app.state.settings = settings
    return app


def create_metrics_app(app: Starlette) -> Starlette:
    """The METRICS_PORT listener: /metrics of `app` (its registry, the context its lifespan
    builds, METRICS_TOKEN too), and nothing else. Serve it in `app`'s process, with no
    lifespan of its own: until `app` has started it answers 503."""
    settings: Settings = app.state.settings
    metrics_app = _starlette(settings, METRICS, lifespan=None)
    metrics_app.state = app.state
    return metrics_app


def _starlette(settings: Settings, routes: list[BaseRoute], lifespan: object) -> Starlette:
    app = Starlette(
        routes=routes,
        middleware=[
            *_proxy_headers(settings),
            Middleware(RequestLog),
            *_fast_path(routes),
        ],
        exception_handlers={
            Rejected: rejected,
            RedisError: redis_error,
            HTTPException: http_error,
            Exception: internal_error,
        },
        lifespan=lifespan,  # type: ignore[arg-type]
    )
    # A redirect would repeat the callback token in a Location header and store nothing.
    app.router.redirect_slashes = False
    return app


def _proxy_headers(settings: Settings) -> list[Middleware]:
    """The client address from X-Forwarded-For, only when the peer is a trusted proxy; with
    no TRUSTED_PROXIES the middleware would change nothing, and is left out."""
    if not settings.trusted_proxies:
        return []
    return [Middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.trusted_proxies))]


def _fast_path(routes: list[BaseRoute]) -> list[Middleware]:
    """The Verihubs GET callback in plain ASGI (receiver/fast_path.py), where it is served."""
    hot = [r for r in routes if isinstance(r, Route) and r.path == VERIHUBS_ROUTE]
    return [Middleware(VerihubsFastPath, route=route) for route in hot[:1]]


def _check_storage(redis: Redis, settings: Settings) -> None:
    """An evicting Redis stops start-up; one that is away is checked once it answers."""
    try:
        storage.check(redis, settings.allow_evicting_redis)
    except RedisError as exc:
        log.warning("redis unreachable at start-up", error=type(exc).__name__)


def _warn_if_open(ctx: Context) -> None:
    for provider in ctx.credentials.missing():
        if ctx.credentials.allow_unauthenticated:
            log.warning("callbacks are NOT authenticated", provider=provider)
        else:
            log.info("callbacks closed: no secret configured", provider=provider)


def _warn_if_any_proxy_is_trusted(settings: Settings) -> None:
    """Settings refuse it with an allowlist; without one it still lets any client choose the
    address that is logged and throttled."""
    if trusts_anyone(settings.trusted_proxies):
        log.warning("TRUSTED_PROXIES trusts everyone: client addresses can be forged")


async def rejected(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Rejected)
    if request.url.path.startswith(CALLBACK_ROUTES):
        await request.app.state.ctx.batcher.count(counters.REJECTED.field(exc.reason))
    annotate(request.scope, reason=exc.reason)
    headers = None
    if isinstance(exc, Unavailable):
        headers = {"Retry-After": str(request.app.state.settings.retry_after)}
    elif isinstance(exc, Throttled):
        headers = {"Retry-After": str(exc.retry_after)}
    return JSONResponse(exc.body(), exc.status_code, headers=headers)


async def redis_error(request: Request, exc: Exception) -> Response:
    return await rejected(request, Unavailable("redis_unavailable", "storage is unavailable"))


# Routing refusals under /callbacks/ are counted like every other refused callback.
ROUTING_REASONS = {404: "no_such_endpoint", 405: "method_not_allowed"}


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith(CALLBACK_ROUTES):
        reason = ROUTING_REASONS.get(exc.status_code, "http_error")
        await request.app.state.ctx.batcher.count(counters.REJECTED.field(reason))
        annotate(request.scope, reason=reason)
    return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)


async def internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error")
    return JSONResponse({"error": "internal error"}, 500)
