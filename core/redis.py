"""Redis connections, built from settings (never at import time)."""

from __future__ import annotations

from redis import Redis

from core.settings import Settings


def connect(settings: Settings, *, blocking: bool = False) -> Redis:
    """A client that fails fast; `blocking` clients (the RQ worker) wait on BLMOVE instead."""
    timeout = None if blocking else settings.redis_timeout
    return Redis.from_url(
        settings.redis,
        socket_timeout=timeout,
        socket_connect_timeout=settings.redis_timeout,
        health_check_interval=30,
    )
