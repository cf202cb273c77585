"""Per-process HTTP metrics (their nature is per process) and the one-line request log."""

from __future__ import annotations

import time

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("receiver")
LOG_FIELDS = "otp.log_fields"
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
# Label values are bounded whatever a client sends: the methods the routes serve (any other
# of the methods the HTTP parser passes is "other"), route templates, and one route for
# every path no route matched.
METHODS = frozenset({"GET", "POST", "HEAD"})
OTHER_METHOD = "other"
UNMATCHED = "unmatched"


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "otp_http_requests",
            "HTTP requests answered",
            ["route", "method", "code"],
            registry=registry,
        )
        self.duration = Histogram(
            "otp_http_request_duration_seconds",
            "HTTP request duration",
            ["route", "method", "code"],
            buckets=BUCKETS,
            registry=registry,
        )
        # Each label set's children, looked up once: `labels()` costs more than the
        # increments (the label values are bounded, see above, and so is this).
        self._children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        labels = (route, method if method in METHODS else OTHER_METHOD, str(status))
        children = self._children.get(labels)
        if children is None:
            children = self.requests.labels(*labels), self.duration.labels(*labels)
            self._children[labels] = children
        children[0].inc()
        children[1].observe(seconds)


def annotate(scope: Scope, **fields: object) -> None:
    """Add fields to this request's summary line (cheaper than binding context vars)."""
    scope.setdefault(LOG_FIELDS, {}).update(fields)


class RequestLog:
    """ASGI middleware: one summary line and the HTTP metrics per request.

    Logs the route template, never the raw path: callback paths carry the secret token.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500
        scope[LOG_FIELDS] = {}

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", UNMATCHED)
        method = scope["method"]
        ctx = getattr(scope["app"].state, "ctx", None)
        if ctx is not None:
            ctx.http.observe(route, method, status, seconds)
        fields = scope[LOG_FIELDS]
        if status >= 400 and scope.get("client"):
            # Who was refused: the address after TRUSTED_PROXIES (the proxy middleware runs
            # before this one).
            fields.setdefault("client", scope["client"][0])
        log.info(
            "request",
            route=route,
            method=method[:16],
            status=status,
            ms=round(seconds * 1000, 2),
            **fields,
        )
