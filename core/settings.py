"""All configuration, read once from the environment into one object.

Nothing else in the code base reads the environment: the web and worker factories build a
`Settings` at start-up and pass it (or the parts of it they need) down explicitly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from ipaddress import ip_network
from zoneinfo import ZoneInfo, available_timezones

from starlette.config import Config
from starlette.datastructures import Secret

from core.clock import MAX_AGE_MS
from core.forwarding import ForwardSettings
from core.keys import DEFAULT_PREFIX, DEFAULT_RECORD_SHARDS, Keys
from core.products import PRODUCTS

DAY = 24 * 3600
PROVIDERS = ("verihubs", "telnyx", "meta", "twilio")
VERIHUBS_PRODUCTS = tuple(name for provider, name in PRODUCTS if provider == "verihubs")
# Callback, admin and metrics tokens: `make run` generates 32 characters (24 random bytes).
MIN_TOKEN_LENGTH = 32
# Billing-record hashes a generation may have: enough for ~130 million records in listpacks.
MAX_RECORD_SHARDS = 1 << 20


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


def _key_prefix(value: str) -> str:
    """Keys are `<prefix>:...`: nothing that could run into another deployment's keys."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", value):
        raise ValueError("KEY_PREFIX must be 1 to 32 of A-Z a-z 0-9 _ -")
    return value


def _list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


# A callback's request line and headers fit in well under 1 KiB; below this, real ones fail.
MIN_HEADER_BYTES = 1024
# Verihubs, Telnyx and Twilio send one status per callback: a few KiB at most.
SMALL_BODY_BYTES = 16 * 1024


def _body_limits(config: Config) -> dict[str, int]:
    """Each provider's body limit: `<PROVIDER>_MAX_BODY_BYTES`, by default MAX_BODY_BYTES
    for Meta (its batches hold many statuses) and 16 KiB (at most MAX_BODY_BYTES) for the
    others."""
    ceiling = config("MAX_BODY_BYTES", cast=int, default=1024 * 1024)
    defaults = {p: ceiling if p == "meta" else min(SMALL_BODY_BYTES, ceiling) for p in PROVIDERS}
    return {
        p: config(f"{p.upper()}_MAX_BODY_BYTES", cast=int, default=defaults[p]) for p in PROVIDERS
    }


def trusts_anyone(proxies: Iterable[str]) -> bool:
    """Whether TRUSTED_PROXIES believes any client's X-Forwarded-For (`*`, `0.0.0.0/0`)."""
    for proxy in proxies:
        try:
            if proxy == "*" or ip_network(proxy, strict=False).prefixlen == 0:
                return True
        except ValueError:
            continue  # a host name or a bad entry: uvicorn's to judge
    return False


def _secrets(value: str) -> tuple[Secret, ...]:
    """Comma-separated tokens, all valid at once (rotation); empty: none."""
    return tuple(Secret(item) for item in _list(value))


def _port(value: str) -> int | None:
    if not value.strip():
        return None
    port = int(value)
    if not 0 < port < 65536:
        raise ValueError(f"METRICS_PORT must be a TCP port, not {port}")
    return port


def product_variable(product: str) -> str:
    """`sms-otp` -> `CALLBACK_TOKEN_SMS_OTP`."""
    return "CALLBACK_TOKEN_" + product.upper().replace("-", "_")


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
    callback_tokens: tuple[Secret, ...]
    # Per Verihubs product (only those set): they replace CALLBACK_TOKEN for its URL.
    product_callback_tokens: Mapping[str, tuple[Secret, ...]]
    allow_unauthenticated_callbacks: bool
    admin_tokens: tuple[Secret, ...]
    metrics_tokens: tuple[Secret, ...]
    metrics_port: int | None
    metrics_host: str
    metrics_cache_seconds: float
    auth_failures_per_minute: int
    key_prefix: str
    queue_name: str
    message_ttl: int
    billing_horizon: int
    billing_record_shards: int
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
    # The front door (receiver/server.py and receiver/body.py).
    body_limits: Mapping[str, int]
    header_timeout: float
    body_timeout: float
    max_connections: int
    max_header_bytes: int
    # Events out and the delivery timer (issue 15): FORWARD_*, OUTBOX_*, DELIVERY_TIMEOUT*.
    forward: ForwardSettings

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        config = Config(environ=dict(os.environ if environ is None else environ))
        prefix = config("KEY_PREFIX", cast=_key_prefix, default=DEFAULT_PREFIX)
        return cls(
            redis_url=config("REDIS_URL", default=None),
            callback_tokens=config("CALLBACK_TOKEN", cast=_secrets, default=""),
            product_callback_tokens={
                product: tokens
                for product in VERIHUBS_PRODUCTS
                if (tokens := config(product_variable(product), cast=_secrets, default=""))
            },
            allow_unauthenticated_callbacks=config(
                "ALLOW_UNAUTHENTICATED_CALLBACKS", cast=bool, default=False
            ),
            admin_tokens=config("ADMIN_TOKEN", cast=_secrets, default=""),
            metrics_tokens=config("METRICS_TOKEN", cast=_secrets, default=""),
            metrics_port=config("METRICS_PORT", cast=_port, default=""),
            metrics_host=config("METRICS_HOST", default="127.0.0.1"),
            metrics_cache_seconds=config("METRICS_CACHE_SECONDS", cast=float, default=1.0),
            auth_failures_per_minute=config("AUTH_FAILURES_PER_MINUTE", cast=int, default=10),
            key_prefix=prefix,
            queue_name=config("QUEUE_NAME", default=f"{prefix}-callbacks"),
            message_ttl=config("MESSAGE_TTL", cast=int, default=7 * DAY),
            billing_horizon=config("BILLING_HORIZON", cast=int, default=35 * DAY),
            billing_record_shards=config(
                "BILLING_RECORD_SHARDS", cast=int, default=DEFAULT_RECORD_SHARDS
            ),
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
            body_limits=_body_limits(config),
            header_timeout=config("HEADER_TIMEOUT", cast=float, default=10.0),
            body_timeout=config("BODY_TIMEOUT", cast=float, default=10.0),
            max_connections=config("MAX_CONNECTIONS", cast=int, default=512),
            max_header_bytes=config("MAX_HEADER_BYTES", cast=int, default=16 * 1024),
            forward=ForwardSettings.from_config(config),
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
        if not 1 <= self.billing_record_shards <= MAX_RECORD_SHARDS:
            raise ValueError(f"BILLING_RECORD_SHARDS must be 1 to {MAX_RECORD_SHARDS}")
        self._check_tokens()
        self._check_front_door()
        if trusts_anyone(self.trusted_proxies) and any(self.allowed_networks.values()):
            raise ValueError(
                "TRUSTED_PROXIES=* believes any client's X-Forwarded-For, so anyone could pass"
                " the *_ALLOWED_NETWORKS allowlists: list the proxies' own addresses"
            )
        if self.redis_sentinels and not self.redis_sentinel_master:
            raise ValueError("REDIS_SENTINELS needs REDIS_SENTINEL_MASTER (the monitored name)")
        if self.redis_min_replicas < 0:
            raise ValueError("REDIS_MIN_REPLICAS must be 0 or more")
        if not self.redis_replica_timeout > 0:  # WAIT with 0 would block forever
            raise ValueError("REDIS_REPLICA_TIMEOUT must be above 0 s")
        return self

    def _check_front_door(self) -> None:
        for provider, limit in self.body_limits.items():
            if not 0 < limit <= self.max_body_bytes:
                raise ValueError(
                    f"{provider.upper()}_MAX_BODY_BYTES must be between 1 and MAX_BODY_BYTES"
                    f" ({self.max_body_bytes})"
                )
        if min(self.header_timeout, self.body_timeout) <= 0:
            raise ValueError("HEADER_TIMEOUT and BODY_TIMEOUT must be positive")
        if self.max_connections < 1:
            raise ValueError("MAX_CONNECTIONS must be at least 1")
        if self.max_header_bytes < MIN_HEADER_BYTES:
            raise ValueError(f"MAX_HEADER_BYTES must be at least {MIN_HEADER_BYTES}")

    def _check_tokens(self) -> None:
        """Every token long enough to be unguessable; a short one stops start-up (its value
        is never printed)."""
        named = [
            ("CALLBACK_TOKEN", self.callback_tokens),
            *((product_variable(p), t) for p, t in self.product_callback_tokens.items()),
            ("ADMIN_TOKEN", self.admin_tokens),
            ("METRICS_TOKEN", self.metrics_tokens),
        ]
        for variable, tokens in named:
            for position, token in enumerate(tokens, 1):
                if len(str(token)) < MIN_TOKEN_LENGTH:
                    raise ValueError(
                        f"{variable}: token {position} of {len(tokens)} is shorter than"
                        f" {MIN_TOKEN_LENGTH} characters (generate one with"
                        " `python3 -c 'import secrets; print(secrets.token_urlsafe(24))'`)"
                    )

    @property
    def keys(self) -> Keys:
        return Keys(self.key_prefix)

    @property
    def redis(self) -> str:
        if self.redis_url is None:
            raise RuntimeError("REDIS_URL is not set: start through `make run` or set it")
        return self.redis_url
