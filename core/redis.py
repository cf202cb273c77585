"""Redis connections, built from settings (never at import time): the one place they are made.

Without `REDIS_SENTINELS` a client connects to `REDIS_URL`. With them, it asks the sentinels
for the current primary of `REDIS_SENTINEL_MASTER` whenever it (re)connects (redis-py's
`Sentinel.master_for`), so web, worker and every command follow a failover without a
restart; `REDIS_URL`, if set, then gives only the database, user and password (and TLS with
`rediss://`), its host and port are not used.
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import NoBackoff
from redis.connection import SSLConnection, parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel

from core.settings import Settings

# What of REDIS_URL a Sentinel-found primary still takes.
URL_OPTIONS = ("db", "username", "password")


def connect(settings: Settings, *, blocking: bool = False, writer: bool = False) -> Redis:
    """A client that fails fast; `blocking` clients (the RQ worker) wait on BLMOVE instead.

    `writer` is the receiver's job writer: a client of ONE connection, so that the WAIT that
    follows a batch's transaction runs on the connection that wrote it (WAIT counts the
    replicas holding that connection's writes); its read timeout covers the WAIT; and nothing
    is re-sent automatically (a transaction re-sent after a lost reply could queue a batch
    twice: a failed write is answered 503 and the provider sends it again).
    """
    timeout = None if blocking else settings.redis_timeout
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": settings.redis_timeout,
        "health_check_interval": 30,
    }
    if writer:
        options["socket_timeout"] = settings.redis_timeout + settings.redis_replica_timeout
        options["max_connections"] = 1
        options["retry"] = Retry(NoBackoff(), 0)
    if not settings.redis_sentinels:
        return Redis.from_url(settings.redis, **options)
    return _sentinel(settings).master_for(
        settings.redis_sentinel_master, **_url_options(settings.redis_url), **options
    )


def _sentinel(settings: Settings) -> Sentinel:
    password = settings.redis_sentinel_password
    return Sentinel(
        settings.redis_sentinels,
        sentinel_kwargs={
            "socket_timeout": settings.redis_timeout,
            "socket_connect_timeout": settings.redis_timeout,
            "password": str(password) if password else None,
        },
    )


def _url_options(url: str | None) -> dict[str, Any]:
    if not url:
        return {}
    parsed = parse_url(url)
    options = {k: parsed[k] for k in URL_OPTIONS if k in parsed}
    if parsed.get("connection_class") is SSLConnection:
        options["ssl"] = True
    return options


def connect_async(settings: Settings, *, writer: bool = False) -> AsyncRedis:
    """An asyncio client (the forwarder), connecting as `connect` does; strings decoded.

    `writer`: the receiver's job writer on the event loop, as `connect(writer=True)` (one
    connection, read timeout covering WAIT, nothing re-sent), replies left as bytes."""
    options: dict[str, Any] = {
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
        "health_check_interval": 30,
        "decode_responses": True,
    }
    if writer:
        options["socket_timeout"] = settings.redis_timeout + settings.redis_replica_timeout
        options["max_connections"] = 1
        options["retry"] = AsyncRetry(NoBackoff(), 0)
        options["decode_responses"] = False
    if not settings.redis_sentinels:
        return AsyncRedis.from_url(settings.redis, **options)
    password = settings.redis_sentinel_password
    sentinel = AsyncSentinel(
        settings.redis_sentinels,
        sentinel_kwargs={
            "socket_timeout": settings.redis_timeout,
            "socket_connect_timeout": settings.redis_timeout,
            "password": str(password) if password else None,
        },
    )
    return sentinel.master_for(
        settings.redis_sentinel_master, **_url_options(settings.redis_url), **options
    )
