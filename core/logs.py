"""structlog, configured once: JSON lines on stdout."""

from __future__ import annotations

import logging
import sys
import time

import orjson
import structlog

# uvicorn's loggers: by its own configuration they write plain text to stderr. Here they
# propagate to the root handler, JSON on stdout like every other line.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def configure(level: str = "info") -> None:
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            # orjson renders bytes straight for the BytesLogger: a request line stays cheap.
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.BytesLoggerFactory(sys.stdout.buffer),
        cache_logger_on_first_use=True,
    )
    # Libraries (RQ, uvicorn) log through stdlib logging: keep their warnings, as JSON too.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.stdlib.ExtraAdder(allow=[Repeats.FIELD]),
            ],
        )
    )
    handler.addFilter(Repeats())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # Never uvicorn's access log, whatever its --log-level: its lines carry the raw path, and
    # with it the callback token (the receiver's own request line logs the route instead).
    # Not propagated either: uvicorn's protocol logs access only if the logger has a handler
    # (its own or an ancestor's), and would otherwise build each line's arguments per request.
    access = logging.getLogger("uvicorn.access")
    access.setLevel(logging.WARNING)
    access.propagate = False


class Repeats(logging.Filter):
    """At most BURST lines of one message per WINDOW seconds: a client can make a library
    warn once per request (uvicorn's "Invalid HTTP request received."), but not flood the
    log. The first line after a window that dropped some says how many (`dropped`)."""

    FIELD = "dropped"
    BURST = 10
    WINDOW = 60.0
    MAX_KEYS = 1024

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[tuple[str, object], list[float | int]] = {}  # [start, count, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        now, key = time.monotonic(), (record.name, record.msg)
        entry = self.seen.get(key)
        if entry is None or now - entry[0] >= self.WINDOW:
            if len(self.seen) >= self.MAX_KEYS:
                self.seen.clear()
            if entry is not None and entry[2]:
                setattr(record, self.FIELD, int(entry[2]))
            self.seen[key] = [now, 1, 0]
            return True
        entry[1] += 1
        if entry[1] > self.BURST:
            entry[2] += 1
            return False
        return True
