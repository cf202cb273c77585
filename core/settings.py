"""All configuration, read once from the environment into one object.

Nothing else in the code base reads the environment: the web and worker factories build a
`Settings` at start-up and pass it (or the parts of it they need) down explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from starlette.config import Config
from starlette.datastructures import Secret

from core.clock import MAX_AGE_MS

DAY = 24 * 3600
PROVIDERS = ("verihubs", "telnyx", "meta", "twilio")


def _secret(value: str) -> Secret | None:
    """An empty secret is no secret: an endpoint or token left empty stays closed."""
    return Secret(value) if value.strip() else None


def zone(name: str) -> ZoneInfo:
    """An IANA time zone by name; ValueError for one the zone database does not know.

    Only names the database lists are looked up: ZoneInfo takes any name as a file path."""
    if name not in _zone_names():
        raise ValueError(f"unknown time zone {name[:64]!r} (an IANA name, e.g. Asia/Jakarta)")
    return ZoneInfo(name)


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def _list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


SENTINEL_PORT = 26379


def _addresses(value: str) -> tuple[tuple[str, int], ...]:
    """`host:port,host:port` (port 26379 when left out; `[v6]:port` for IPv6)."""
    found = []
    for item in _list(value):
        host, sep, port = item.rpartition(":")
        if not sep or host.endswith(":"):  # no port, or a bare IPv6 address
            host, port = item, str(SENTINEL_PORT)
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"REDIS_SENTINELS: {item!r} is not host:port")
        found.append((host, int(port)))
    return tuple(found)


@dataclass(frozen=True)
class Settings:
    redis_url: str | None
    callback_token: Secret | None
    allow_unauthenticated_callbacks: bool
    admin_token: Secret | None
    queue_name: str
    message_ttl: int
    billing_horizon: int
    billing_timezone: ZoneInfo
    failed_job_ttl: int
    job_timeout: int
    job_retries: int
    max_body_bytes: int
    max_batch: int
    max_backlog: int
    retry_after: int
    redis_timeout: float
    redis_sentinels: tuple[tuple[str, int], ...]
    redis_sentinel_master: str | None
    redis_sentinel_password: Secret | None
    redis_min_replicas: int
    redis_replica_timeout: float
    maintenance_interval: int
    log_level: str
    telnyx_public_key: Secret | None
    telnyx_tolerance: int
    meta_app_secret: Secret | None
    meta_verify_token: Secret | None
    twilio_auth_token: Secret | None
    public_url: str | None
    trusted_proxies: tuple[str, ...]
    allowed_networks: Mapping[str, tuple[str, ...]]
    max_json_depth: int
    redis_memory_limit: float
    allow_evicting_redis: bool

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        config = Config(environ=dict(os.environ if environ is None else environ))
        return cls(
            redis_url=config("REDIS_URL", default=None),
            callback_token=config("CALLBACK_TOKEN", cast=_secret, default=""),
            allow_unauthenticated_callbacks=config(
                "ALLOW_UNAUTHENTICATED_CALLBACKS", cast=bool, default=False
            ),
            admin_token=config("ADMIN_TOKEN", cast=_secret, default=""),
            queue_name=config("QUEUE_NAME", default="otp-callbacks"),
            message_ttl=config("MESSAGE_TTL", cast=int, default=7 * DAY),
            billing_horizon=config("BILLING_HORIZON", cast=int, default=35 * DAY),
            billing_timezone=config("BILLING_TIMEZONE", cast=zone, default="UTC"),
            failed_job_ttl=config("FAILED_JOB_TTL", cast=int, default=7 * DAY),
            job_timeout=config("JOB_TIMEOUT", cast=int, default=60),
            job_retries=config("JOB_RETRIES", cast=int, default=3),
            max_body_bytes=config("MAX_BODY_BYTES", cast=int, default=1024 * 1024),
            max_batch=config("MAX_BATCH", cast=int, default=256),
            max_backlog=config("MAX_BACKLOG", cast=int, default=500_000),
            retry_after=config("RETRY_AFTER", cast=int, default=5),
            redis_timeout=config("REDIS_TIMEOUT", cast=float, default=2.0),
            redis_sentinels=config("REDIS_SENTINELS", cast=_addresses, default=""),
            redis_sentinel_master=config("REDIS_SENTINEL_MASTER", default=None) or None,
            redis_sentinel_password=config("REDIS_SENTINEL_PASSWORD", cast=_secret, default=""),
            redis_min_replicas=config("REDIS_MIN_REPLICAS", cast=int, default=0),
            redis_replica_timeout=config("REDIS_REPLICA_TIMEOUT", cast=float, default=1.0),
            maintenance_interval=config("WORKER_MAINTENANCE_INTERVAL", cast=int, default=60),
            log_level=config("LOG_LEVEL", default="info"),
            telnyx_public_key=config("TELNYX_PUBLIC_KEY", cast=_secret, default=""),
            telnyx_tolerance=config("TELNYX_TOLERANCE", cast=int, default=300),
            meta_app_secret=config("META_APP_SECRET", cast=_secret, default=""),
            meta_verify_token=config("META_VERIFY_TOKEN", cast=_secret, default=""),
            twilio_auth_token=config("TWILIO_AUTH_TOKEN", cast=_secret, default=""),
            public_url=config("PUBLIC_URL", default=None),
            trusted_proxies=config("TRUSTED_PROXIES", cast=_list, default=""),
            allowed_networks={
                p: config(f"{p.upper()}_ALLOWED_NETWORKS", cast=_list, default="")
                for p in PROVIDERS
            },
            max_json_depth=config("MAX_JSON_DEPTH", cast=int, default=32),
            redis_memory_limit=config("REDIS_MEMORY_LIMIT", cast=float, default=0.9),
            allow_evicting_redis=config("ALLOW_EVICTING_REDIS", cast=bool, default=False),
        )._checked()

    def _checked(self) -> Settings:
        # What billing needs of a message must outlive its state, and any provider time we
        # believe: a replay within either finds the message's billing and re-attaches to it.
        floor = max(self.message_ttl, MAX_AGE_MS // 1000)
        if self.billing_horizon < floor:
            raise ValueError(
                f"BILLING_HORIZON must be at least {floor} s (MESSAGE_TTL, and the 30 days"
                " within which provider times are believed)"
            )
        if self.redis_sentinels and not self.redis_sentinel_master:
            raise ValueError("REDIS_SENTINELS needs REDIS_SENTINEL_MASTER (the monitored name)")
        if self.redis_min_replicas < 0:
            raise ValueError("REDIS_MIN_REPLICAS must be 0 or more")
        if not self.redis_replica_timeout > 0:  # WAIT with 0 would block forever
            raise ValueError("REDIS_REPLICA_TIMEOUT must be above 0 s")
        return self

    @property
    def redis(self) -> str:
        if self.redis_url is None:
            raise RuntimeError("REDIS_URL is not set: start through `make run` or set it")
        return self.redis_url
