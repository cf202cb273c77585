"""Operations: metrics, liveness and readiness probes, this document."""

from __future__ import annotations

from receiver.openapi.blocks import (
    OPS,
    Schema,
    json_content,
    obj,
    ok,
    operation,
    string,
    unavailable,
)


def metrics() -> Schema:
    text = {"text/plain": {"schema": string("Prometheus text exposition format.")}}
    return operation("metrics", OPS, "Prometheus metrics.", {"200": ok("The metrics.", text)})


def healthz() -> Schema:
    return _probe("healthz", "The process is up.", "ok")


def readyz() -> Schema:
    return _probe("readyz", "Redis answers.", "ready", **{"503": unavailable("Redis is down.")})


def openapi() -> Schema:
    answer = ok("An OpenAPI 3.0 document.", json_content({"type": "object"}))
    return operation("openapi", OPS, "This document.", {"200": answer})


def _probe(operation_id: str, summary: str, status: str, **responses: Schema) -> Schema:
    answer = obj({"status": string(enum=[status])}, ("status",))
    return operation(
        operation_id,
        OPS,
        summary,
        {"200": ok(summary, json_content(answer)), **responses},
    )
