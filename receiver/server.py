"""The web process: uvicorn with the limits that keep the front door open under attack.

`python -m receiver.server --host 127.0.0.1 --port 8000` (the Procfile's `web`). uvicorn alone
has no deadline for a request's headers or body (`timeout_keep_alive` only covers the idle
time between requests, and any byte resets it), no cap on connections that would close idle
ones (`limit_concurrency` answers 503 to requests, and counts silent sockets against real
callbacks), and no header size limit with httptools (`h11_max_incomplete_event_size` is for
h11 only). `Guarded`, a subclass of uvicorn's httptools protocol, adds them:

- HEADER_TIMEOUT: from a connection's start, or the end of its last response, to the end of
  its next request's headers (silent sockets, idle keep-alives, slowloris); then 408 (when
  something was sent) and closed.
- BODY_TIMEOUT: from the end of the headers to the end of the body (a trickled body); the app
  sees the client go away, the client gets 408.
- MAX_HEADER_BYTES: request line and headers; 431 and closed as soon as more arrived, so a
  huge header is never parsed (httptools joins a header's pieces by copying: quadratic).
- MAX_CONNECTIONS (at most the file descriptors allow): a connection beyond it evicts the one
  that has waited longest for its client's bytes (a slow client is old, a real callback is a
  few milliseconds in); when every connection is the app's to answer, the new one is closed.
- A response sent before its request's body was read (a refusal) closes the connection:
  the rest of the body is not read.

What it closes is logged once per 10 s, counted by reason. With METRICS_PORT, /metrics is
served by a second listener in the same process (receiver.app.create_metrics_app).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, ClassVar

import structlog
import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from core import logs
from core.settings import Settings
from receiver.app import create_app, create_metrics_app

log = structlog.get_logger("receiver.server")
# File descriptors kept for what is not a client connection: Redis, logs, the listeners.
FD_RESERVE = 64
REPORT_EVERY = 10.0
REASONS = {
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
}


@dataclass(frozen=True)
class Limits:
    header_timeout: float
    body_timeout: float
    max_connections: int
    max_header_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        available = descriptors() - FD_RESERVE
        connections = min(settings.max_connections, available)
        if connections < 1:
            raise ValueError(f"only {available + FD_RESERVE} file descriptors: too few to serve")
        if connections < settings.max_connections:
            log.warning(
                "MAX_CONNECTIONS lowered to what the file descriptor limit allows",
                max_connections=settings.max_connections,
                allowed=connections,
            )
        return cls(
            settings.header_timeout,
            settings.body_timeout,
            connections,
            settings.max_header_bytes,
        )


def descriptors() -> int:
    """The file descriptor limit, raised to the hard limit where it is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


class Guard:
    """What the connections of one listener share: those waiting for their client's bytes,
    by what they wait for and since when (oldest first), and what was closed.

    Deadlines are kept by a sweep every SWEEP seconds rather than a timer per request: a
    callback's request costs a few dict operations, not timers armed and cancelled."""

    SWEEP = 0.25

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.timeouts = {"header": limits.header_timeout, "body": limits.body_timeout}
        self.waiting: dict[str, dict[Guarded, float]] = {"header": {}, "body": {}}
        self.sweeper: asyncio.TimerHandle | None = None
        self.closed: Counter[str] = Counter()
        self.report: asyncio.TimerHandle | None = None

    def admit(self, new: Guarded) -> bool:
        """Make room for `new`; False when none can be made (it is to be closed)."""
        if len(new.connections) <= self.limits.max_connections:
            return True
        oldest = min(
            (next(iter(w.items())) for w in self.waiting.values() if w),
            key=lambda entry: entry[1],
            default=None,
        )
        if oldest is None:
            self.count(new.loop, "refused")
            return False
        oldest[0].close_waiting("evicted")
        return True

    def wait(self, protocol: Guarded, what: str | None, before: str | None) -> None:
        if before is not None:
            self.waiting[before].pop(protocol, None)
        if what is not None:
            self.waiting[what][protocol] = protocol.loop.time()
            if self.sweeper is None:
                self.sweeper = protocol.loop.call_later(self.SWEEP, self._sweep, protocol.loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for what, waiting in self.waiting.items():
            timeout = self.timeouts[what]
            while waiting:
                protocol, since = next(iter(waiting.items()))
                if now - since < timeout:
                    break
                protocol.expired()  # takes it out of `waiting`, or back in at its end
        busy = any(self.waiting.values())
        self.sweeper = loop.call_later(self.SWEEP, self._sweep, loop) if busy else None

    def count(self, loop: asyncio.AbstractEventLoop, reason: str) -> None:
        self.closed[reason] += 1
        if self.report is None:
            self.report = loop.call_later(REPORT_EVERY, self._report)

    def _report(self) -> None:
        self.report = None
        log.warning("connections closed by the front door", **dict(self.closed))
        self.closed.clear()


class Guarded(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines, a header size cap and a connection cap
    (`protocol(limits)` binds a Guard)."""

    guard: ClassVar[Guard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # RequestLog is the access log; uvicorn's would write the path, callback token and all.
        self.access_log = False
        self.limits = self.guard.limits
        self.waiting_for: str | None = None  # "header" or "body", or None: the app's turn
        self.in_head = True  # the parser is before the end of a request's headers
        self.head_bytes = 0
        self.body_done = True

    # The connection --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.guard.admit(self):
            self.connections.discard(self)
            transport.close()
            return
        self._wait("header")

    def connection_lost(self, exc: Exception | None) -> None:
        self._wait(None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        if not self.in_head:
            super().data_received(data)
            return
        # Of a request's head, the parser is fed no more than the limit (and the blank line
        # that ends it): past that, 431 without parsing the rest.
        room = max(self.limits.max_header_bytes + 4 - self.head_bytes, 0)
        head, rest = (data, b"") if len(data) <= room else (data[:room], data[room:])
        self.head_bytes += len(head)
        super().data_received(head)
        if self.transport.is_closing():
            return
        if self.in_head and self.head_bytes > self.limits.max_header_bytes:
            self._answer_and_close(431, "header_too_large")
        elif rest:
            self.data_received(rest)  # a body, or the next request (counted afresh)

    # Parser callbacks (within feed_data) -------------------------------------------------

    def on_headers_complete(self) -> None:
        self.in_head, self.body_done = False, False
        self._wait("body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.in_head, self.body_done, self.head_bytes = True, True, 0
        self._wait(None)  # the app's turn

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if not self.cycle.response_complete:  # a pipelined request has started
            self._wait(None if self.body_done else "body")
        elif not self.body_done:
            # Answered before its body was read (a refusal): the rest is not worth reading.
            self.transport.close()
        else:
            self._wait("header")

    # Deadlines ---------------------------------------------------------------------------

    def _wait(self, what: str | None) -> None:
        before, self.waiting_for = self.waiting_for, what
        if what is not None or before is not None:
            self.guard.wait(self, what, before)

    def expired(self) -> None:
        """Its deadline has passed (the Guard's sweep)."""
        if self.waiting_for == "body" and self.pipeline:
            # A pipelined request waits for the one before it (reading is paused): not slow.
            self._wait("body")
            return
        self.close_waiting(f"{self.waiting_for}_timeout")

    def close_waiting(self, reason: str) -> None:
        """Close a connection that waits for its client (deadline passed, or evicted)."""
        self._wait(None)
        self.connections.discard(self)  # counted out now, not when the loop gets to it
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The app waits for a body that is not coming: it sees the client go away.
            started = cycle.response_started
            cycle.disconnected = True
            cycle.message_event.set()
            if not started:
                self._answer_and_close(408, reason)
                return
        elif self.head_bytes or not self.in_head:
            self._answer_and_close(408, reason)
            return
        self.guard.count(self.loop, reason)
        self.transport.close()

    def _answer_and_close(self, status: int, reason: str) -> None:
        self._wait(None)
        self.guard.count(self.loop, reason)
        phrase = REASONS[status]
        cycle = self.cycle
        if cycle is None or cycle.response_complete or cycle.disconnected:
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                % (status, phrase, len(phrase), phrase)
            )
        self.transport.close()


def protocol(limits: Limits) -> type[Guarded]:
    """A Guarded class of its own for one listener."""
    return type("Guarded", (Guarded,), {"guard": Guard(limits)})


# The process --------------------------------------------------------------------------


class Listener(uvicorn.Server):
    """A uvicorn server; the first of a process takes the signals and stops the others."""

    def __init__(self, config: uvicorn.Config, followers: Sequence[Listener] = ()) -> None:
        super().__init__(config)
        self.followers = followers

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        for follower in self.followers:
            follower.should_exit = True


class Follower(Listener):
    def capture_signals(self) -> Any:  # the leader has them
        return _NoSignals()


class _NoSignals:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def config(app: Starlette, host: str, port: int, limits: Limits, lifespan: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol(limits),
        ws="none",  # no websocket route: no upgrade to another protocol's parser
        lifespan=lifespan,
        # uvicorn's loggers propagate to the root handler: JSON (core/logs.py). Its access
        # log is off in the protocol, so access_log is left alone here.
        log_config=None,
        proxy_headers=False,  # the app alone decides whom to believe (TRUSTED_PROXIES)
        server_header=False,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m receiver.server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        logs.configure()
        log.error("configuration refused", error=str(exc))
        return 2
    logs.configure(settings.log_level)
    limits = Limits.from_settings(settings)
    app = create_app(settings)
    followers: list[Listener] = []
    if settings.metrics_port is not None:
        metrics = config(
            create_metrics_app(app), settings.metrics_host, settings.metrics_port, limits, "off"
        )
        followers.append(Follower(metrics))
    leader = Listener(config(app, args.host, args.port, limits, "on"), followers)
    log.info(
        "listening",
        host=args.host,
        port=args.port,
        metrics_port=settings.metrics_port,
        header_timeout=limits.header_timeout,
        body_timeout=limits.body_timeout,
        max_connections=limits.max_connections,
        max_header_bytes=limits.max_header_bytes,
    )

    async def serve() -> None:
        await asyncio.gather(leader.serve(), *(f.serve() for f in followers))

    with asyncio.Runner(loop_factory=leader.config.get_loop_factory()) as runner:
        runner.run(serve())
    return 0 if leader.started else 3


if __name__ == "__main__":
    sys.exit(main())
