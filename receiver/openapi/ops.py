"""Operations: metrics, liveness and readiness probes, this document."""

from __future__ import annotations

from receiver.openapi.admin import METRICS_SECURITY
from receiver.openapi.blocks import (
    OPS,
    Schema,
    error,
    json_content,
    obj,
    ok,
    operation,
    string,
    throttled,
    unavailable,
)


def metrics() -> Schema:
    return _metrics(
        "metrics",
        "This process's Prometheus metrics (`otp_http_*`, `otp_admin_rejected_total`): scrape"
        " every web process.",
    )


def shared_metrics() -> Schema:
    return _metrics(
        "sharedMetrics",
        "The Prometheus metrics Redis holds (callbacks, billing, latencies, queue, Redis), the"
        " same on every web process: scrape one target only, or every figure is multiplied.",
    )


def _metrics(operation_id: str, summary: str) -> Schema:
    text = {"text/plain": {"schema": string("Prometheus text exposition format.")}}
    return operation(
        operation_id,
        OPS,
        summary + " With METRICS_TOKEN set, a bearer token is required; with METRICS_PORT"
        " set, served only on that listener (not listed here then).",
        {
            "200": ok("The metrics.", text),
            "401": error("METRICS_TOKEN is set and the bearer token is missing or wrong."),
            "429": throttled(),
            "503": unavailable("The METRICS_PORT listener, while the receiver starts."),
        },
        security=METRICS_SECURITY,
    )


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
