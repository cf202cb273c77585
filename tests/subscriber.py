"""The application's side, for the forwarder's tests: a real HTTP server that verifies every
request's signature with the `standardwebhooks` library (as a receiver would), records what
it got, and can be taken down, slowed or made to fail; and the forwarder as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
from redis import Redis
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from core import webhooks
from core.embedded import free_port
from core.keys import DEFAULT as KEYS
from core.webhooks import OutboxEvent
from tests.support import ROOT
from tools.stack import wait_until

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@dataclass
class Received:
    id: str
    body: bytes
    event: dict


@dataclass
class Subscriber:
    """Answers `status` (after `delay` seconds); refuses the connection while down."""

    port: int = field(default_factory=free_port)
    status: int = 204
    delay: float = 0.0
    # Every `slow_every`-th request answered after `slow_delay` s (a real endpoint's tail).
    slow_every: int = 0
    slow_delay: float = 0.0
    secret: str = SECRET
    received: list[Received] = field(default_factory=list)
    bad_signatures: int = 0
    requests: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/otp"

    def up(self) -> Subscriber:
        subscriber, verifier = self, Webhook(self.secret)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with subscriber._lock:
                    subscriber.requests += 1
                    nth = subscriber.requests
                try:
                    event = verifier.verify(body, dict(self.headers))
                except WebhookVerificationError:
                    with subscriber._lock:
                        subscriber.bad_signatures += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                if subscriber.delay:
                    time.sleep(subscriber.delay)
                if subscriber.slow_every and nth % subscriber.slow_every == 0:
                    time.sleep(subscriber.slow_delay)
                status = subscriber.status
                if 200 <= status < 300:
                    with subscriber._lock:
                        subscriber.received.append(
                            Received(self.headers["webhook-id"], body, event)
                        )
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def ids(self) -> set[str]:
        with self._lock:
            return {r.id for r in self.received}

    def copies(self) -> dict[str, set[bytes]]:
        """Each delivered id with the distinct bodies it came with (one, if ids mean events)."""
        found: dict[str, set[bytes]] = {}
        with self._lock:
            for r in self.received:
                found.setdefault(r.id, set()).add(r.body)
        return found


def add_event(
    redis,
    message_id: str,
    state: str,
    previous: str = "none",
    sequence: int = 1,
    provider: str = "verihubs",
    product: str = "whatsapp-otp",
    at_ms: int = 1_733_000_000_000,
    kind: str = webhooks.STATE_TYPE_FIELD,
) -> str:
    """Appends an entry to the outbox as apply.lua does; its event id."""
    f = webhooks.OutboxField
    entry = redis.xadd(
        "otp:outbox",
        {
            f.TYPE: kind,
            f.PROVIDER: provider,
            f.PRODUCT: product,
            f.MESSAGE_ID: message_id,
            f.PREVIOUS: previous,
            f.STATE: state,
            f.BILLABLE: "1",
            f.AT: str(at_ms),
            f.SEQUENCE: str(sequence),
        },
    )
    return "evt_" + (entry.decode() if isinstance(entry, bytes) else entry)


def outbox_ids(redis) -> list[str]:
    return ["evt_" + i.decode() for i, _ in redis.xrange("otp:outbox")]


@contextmanager
def forwarder(
    redis_url: str, log: Path, ready: bool = True, **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m workers.forward` as the Procfile runs it, once it has registered its
    endpoints (`ready`); SIGKILLed if still running at the end."""
    process = start_forwarder(redis_url, log, **env)
    try:
        endpoints = [u for u in env.get("FORWARD_URL", "").split(",") if u]
        if ready and endpoints:
            redis = Redis.from_url(redis_url)
            wait_until(
                lambda: (
                    redis.hlen(KEYS.forward_endpoints) == len(endpoints)
                    or process.poll() is not None
                ),
                what="forwarder start",
            )
            redis.close()
        yield process
    finally:
        stop(process)


def start_forwarder(redis_url: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    full = {
        **os.environ,
        "REDIS_URL": redis_url,
        "FORWARD_SECRET": SECRET,
        "FORWARD_ALLOW_INSECURE": "true",
        "FORWARD_TIMEOUT": "1",
        "FORWARD_FIRST_RETRY": "0.2",
        "LOG_LEVEL": "info",
        **env,
    }
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "workers.forward"], cwd=ROOT, env=full, stdout=out, stderr=out
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)


def decoded(event: Received) -> dict:
    return orjson.loads(event.body)


def outbox(redis) -> list[OutboxEvent]:
    return [
        OutboxEvent.from_entry(i.decode(), {k.decode(): v.decode() for k, v in f.items()})
        for i, f in redis.xrange(KEYS.outbox)
    ]
