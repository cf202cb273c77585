"""Baseline receivers for the benchmark, served by the same uvicorn settings as ours."""

from __future__ import annotations

import os

from redis import Redis
from rq import Queue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def bare(request: Request) -> JSONResponse:
    """The ceiling: a route that only reads the query."""
    params = request.query_params
    return JSONResponse({"session_id": params.get("session_id"), "status": params.get("status")})


def bare_app() -> Starlette:
    return Starlette(routes=[Route("/callbacks/verihubs/{product}/{token}", bare)])


def enqueue_app() -> Starlette:
    """What the RQ docs suggest: one Queue.enqueue per request."""
    queue = Queue("bench-naive", connection=Redis.from_url(os.environ["REDIS_URL"]))

    def one_job(request: Request) -> JSONResponse:
        params = request.query_params
        queue.enqueue("workers.jobs.apply_batch", [("verihubs", "whatsapp-otp",
                      params["session_id"], int(params["status"]), 0, 0)], result_ttl=0)  # fmt: skip
        return JSONResponse({"status": "accepted"})

    return Starlette(routes=[Route("/callbacks/verihubs/{product}/{token}", one_job)])
