"""Liveness, readiness and the Prometheus endpoint."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
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


def metrics(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    return Response(generate_latest(ctx.registry), media_type=CONTENT_TYPE_LATEST)


async def openapi_document(request: Request) -> JSONResponse:
    return JSONResponse(openapi.document())
