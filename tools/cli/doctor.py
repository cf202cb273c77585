"""`otp-tracker doctor`: what operators get wrong, one line per check.

Each check is `ok`, `warn` (works, but probably not what you want) or `fail` (callbacks or
data are at risk, or a provider cannot reach us); the exit code is 1 when any check fails.
The Redis checks reuse core.storage's, as the services' start-up checks do.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError
from starlette.datastructures import Secret

from core import storage
from core.settings import MIN_TOKEN_LENGTH, VERIHUBS_PRODUCTS, Settings, product_variable
from receiver.providers import telnyx
from tools.cli.config import Config, redacted

OK, WARN, FAIL = "ok", "warn", "fail"
MIN_VERSION = (6, 2)  # BLMOVE: RQ's reliable dequeue (DESIGN.md, Rules)
# Receipt times are ours (web), apply times the worker's: a clock off Redis's by more than
# this makes processing lag and first-seen times wrong by as much.
SKEW_WARN, SKEW_FAIL = 0.25, 2.0


@dataclass(frozen=True)
class Check:
    status: str
    name: str
    detail: str


def run(cfg: Config) -> list[Check]:
    checks = list(_redis_checks(cfg))
    checks += list(_providers(cfg.settings))
    checks += list(_tokens(cfg.settings))
    checks.append(_public_url(cfg.settings))
    return checks


def _redis_checks(cfg: Config) -> Iterator[Check]:
    settings = cfg.settings
    where = redacted(settings.redis_url)
    if settings.redis_sentinels:
        where = f"sentinel {settings.redis_sentinel_master} at {len(settings.redis_sentinels)}"
    if not settings.redis_url and not settings.redis_sentinels:
        yield Check(FAIL, "redis", "no REDIS_URL and no var/redis_url (run `make run` first)")
        return
    redis = cfg.redis()
    try:
        yield from _on_redis(redis, settings, where)
    except RedisError as exc:
        yield Check(FAIL, "redis", f"{where} unreachable: {type(exc).__name__}: {exc}")
    finally:
        redis.close()


def _on_redis(redis: Redis, settings: Settings, where: str) -> Iterator[Check]:
    redis.ping()
    yield Check(OK, "redis", f"{where} answers")
    version = str(redis.info("server")["redis_version"])
    numbers = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    yield Check(
        OK if numbers >= MIN_VERSION else FAIL,
        "redis version",
        f"{version} (6.2 or newer: RQ's reliable dequeue needs BLMOVE)",
    )
    facts = storage.inspect(redis)
    kept = [name for name, on in (("AOF", facts.aof), ("RDB", bool(facts.rdb))) if on]
    if facts.rdb is None:
        kept.append("RDB unknown: CONFIG refused")
    yield Check(
        OK if facts.persists else FAIL,
        "persistence",
        ", ".join(kept) if facts.persists else "none: a restart of Redis loses everything",
    )
    if not facts.evicts:
        detail = f"{facts.policy}"
        status = OK
    else:
        status = WARN if settings.allow_evicting_redis else FAIL
        detail = f"{facts.policy}: may drop callbacks, counters and billing (set noeviction)"
    yield Check(status, "eviction policy", detail)
    if facts.maxmemory:
        yield Check(OK, "maxmemory", f"{facts.maxmemory} bytes, {facts.used_memory} used")
    else:
        # The receiver's guard (REDIS_MEMORY_LIMIT) answers 503 before Redis is full only
        # when Redis has a limit to be full of.
        yield Check(WARN, "maxmemory", "none: Redis grows until the machine runs out")
    yield _skew(redis)


def _skew(redis: Redis) -> Check:
    sent = time.time()
    seconds, micros = redis.time()
    back = time.time()
    skew = seconds + micros / 1e6 - (sent + back) / 2
    status = OK if abs(skew) <= SKEW_WARN else WARN if abs(skew) <= SKEW_FAIL else FAIL
    return Check(status, "clock skew", f"{skew * 1000:+.0f} ms against Redis (round trip "
                 f"{(back - sent) * 1000:.0f} ms)")  # fmt: skip


def _providers(settings: Settings) -> Iterator[Check]:
    open_any = settings.allow_unauthenticated_callbacks
    verihubs = [
        p
        for p in VERIHUBS_PRODUCTS
        if settings.product_callback_tokens.get(p, settings.callback_tokens)
    ]
    if not (
        verihubs
        or open_any
        or any((settings.telnyx_public_key, settings.meta_app_secret, settings.twilio_auth_token))
    ):
        yield Check(WARN, "providers", "every callback endpoint is closed: nothing can arrive")
    if verihubs:
        yield Check(OK, "verihubs", f"open ({', '.join(verihubs)})")
    else:
        yield _closed("verihubs", "CALLBACK_TOKEN", open_any)
    key = settings.telnyx_public_key
    if key is not None:
        try:
            telnyx.public_key(str(key))
            yield Check(OK, "telnyx", "open (TELNYX_PUBLIC_KEY)")
        except ValueError as exc:
            yield Check(FAIL, "telnyx", f"{exc}: the web process will not start")
    else:
        yield _closed("telnyx", "TELNYX_PUBLIC_KEY", open_any)
    for provider, secret, variable in (
        ("meta", settings.meta_app_secret, "META_APP_SECRET"),
        ("twilio", settings.twilio_auth_token, "TWILIO_AUTH_TOKEN"),
    ):
        if secret is not None:
            yield Check(OK, provider, f"open ({variable})")
        else:
            yield _closed(provider, variable, open_any)


def _closed(provider: str, variable: str, unauthenticated: bool) -> Check:
    if unauthenticated:
        detail = f"OPEN TO ANYONE: no {variable} and ALLOW_UNAUTHENTICATED_CALLBACKS is set"
        return Check(WARN, provider, detail)
    return Check(OK, provider, f"closed (404) until {variable} is set")


def _tokens(settings: Settings) -> Iterator[Check]:
    """Settings already refuse a token under MIN_TOKEN_LENGTH (the services would not start,
    and this command would not have got here): what is left to say is which are set."""
    named: list[tuple[str, tuple[Secret, ...]]] = [
        ("CALLBACK_TOKEN", settings.callback_tokens),
        *((product_variable(p), t) for p, t in settings.product_callback_tokens.items()),
        ("ADMIN_TOKEN", settings.admin_tokens),
        ("METRICS_TOKEN", settings.metrics_tokens),
    ]
    for variable, tokens in named:
        if not tokens:
            closes = {"ADMIN_TOKEN": "admin API closed (403)", "METRICS_TOKEN": "/metrics open"}
            yield Check(OK, variable, f"unset: {closes.get(variable, 'Verihubs closed')}")
            continue
        shortest = min(len(str(t)) for t in tokens)
        yield Check(
            OK,
            variable,
            f"{len(tokens)} token(s), shortest {shortest} characters (at least {MIN_TOKEN_LENGTH})",
        )


def _public_url(settings: Settings) -> Check:
    """Twilio signs the URL it called; behind a proxy only PUBLIC_URL tells the receiver
    what that was, so without it every Twilio callback through a proxy is refused (401)."""
    url = settings.public_url
    if settings.twilio_auth_token is None:
        return Check(OK, "PUBLIC_URL", url if url else "not needed (Twilio closed)")
    if not url:
        # Works without a proxy (make run): the URL the request came to is the one signed.
        return Check(
            WARN,
            "PUBLIC_URL",
            "unset while Twilio is open: behind a proxy (TLS, nginx) every Twilio callback"
            " is refused (401): set it to the https:// address Twilio calls",
        )
    if not url.startswith("https://"):
        return Check(WARN, "PUBLIC_URL", f"{url}: not https (Twilio calls what you configure)")
    return Check(OK, "PUBLIC_URL", url)
