"""Bearer-token checks of the admin API and /metrics.

Tokens are compared in constant time, several at once (rotation); without a configured token
the admin API is closed. Every refusal is counted in `otp_admin_rejected_total{reason}` (in
process memory: a flood of guesses costs Redis nothing), and a source address that keeps
failing is refused 429, its token not even compared, until its minute is over.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from ipaddress import IPv6Address, ip_address, ip_network

import structlog
from prometheus_client import CollectorRegistry, Counter
from starlette.requests import Request

from receiver.credentials import Tokens
from receiver.errors import Rejected

log = structlog.get_logger("receiver")
WINDOW_SECONDS = 60.0
# Addresses remembered at most (the least recently failing are forgotten first): bounded
# memory whatever the number of sources.
MAX_SOURCES = 10_000
REASONS = ("admin_closed", "bad_admin_token", "bad_metrics_token", "throttled")


class Throttled(Rejected):
    status_code = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__("throttled", "too many failed attempts from this address, retry later")
        self.retry_after = retry_after


class Guard:
    """Per-address failure counts in fixed one-minute windows; `limit` 0 throttles nothing."""

    def __init__(
        self,
        limit: int,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.monotonic,
        max_sources: int = MAX_SOURCES,
    ) -> None:
        self.limit = limit
        self.clock = clock
        self.max_sources = max_sources
        # source -> (start of its window, failures in it); admin routes run in the thread pool
        self.failures: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.rejected = Counter(
            "otp_admin_rejected",
            "Admin and metrics requests refused: no or a wrong token, closed, throttled",
            ["reason"],
            registry=registry,
        )
        for reason in REASONS:
            self.rejected.labels(reason)

    def check_admin(self, request: Request, tokens: Tokens | None) -> None:
        self._check(request, tokens, "bad_admin_token")

    def check_admin_token(self, request: Request, tokens: Tokens | None, given: str) -> None:
        """An admin token given otherwise than as a bearer header (the console's login form),
        counted and throttled the same way."""
        self._check(request, tokens, "bad_admin_token", given)

    def check_metrics(self, request: Request, tokens: Tokens | None) -> None:
        """/metrics is open without METRICS_TOKEN."""
        if tokens is not None:
            self._check(request, tokens, "bad_metrics_token")

    def _check(
        self, request: Request, tokens: Tokens | None, reason: str, given: str | None = None
    ) -> None:
        source = source_of(request)
        with self._lock:
            retry_after = self._blocked(source)
        if retry_after:
            raise self._refused(Throttled(retry_after))
        if tokens is None:
            refusal = Rejected("admin_closed", "ADMIN_TOKEN is not configured", 403)
        else:
            if given is None:
                scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
                given = bearer if scheme.lower() == "bearer" else ""
            if given and tokens.matches(given.strip()):
                with self._lock:
                    self.failures.pop(source, None)
                return
            refusal = Rejected(reason, "a valid bearer token is required", 401)
        with self._lock:
            self._failed(source)
        raise self._refused(refusal)

    def _refused(self, refusal: Rejected) -> Rejected:
        self.rejected.labels(refusal.reason).inc()
        return refusal

    def _blocked(self, source: str) -> int:
        """Seconds until the source may try again (0: now)."""
        entry = self.failures.get(source)
        if entry is None or not self.limit:
            return 0
        start, count = entry
        left = start + WINDOW_SECONDS - self.clock()
        if left <= 0:
            del self.failures[source]
            return 0
        return math.ceil(left) if count >= self.limit else 0

    def _failed(self, source: str) -> None:
        if not self.limit:
            return
        now = self.clock()
        start, count = self.failures.pop(source, (now, 0))
        if now - start >= WINDOW_SECONDS:
            start, count = now, 0
        self.failures[source] = (start, count + 1)  # now the most recent
        if count + 1 == self.limit:
            log.warning("source throttled", client=source, failures=self.limit)
        while len(self.failures) > self.max_sources:
            self.failures.popitem(last=False)


def source_of(request: Request) -> str:
    """The client address (after TRUSTED_PROXIES); an IPv6 client by its /64, which one
    machine usually holds whole."""
    host = request.client.host if request.client else ""
    try:
        address = ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ip_network(f"{address}/64", strict=False))
    return str(address)
