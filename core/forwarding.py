"""Delivering events to the application: configuration, endpoint checks and the retry schedule.

Sans I/O: name resolution is the caller's (the forwarder resolves at start-up and again on
every connection, `workers.forward`); these functions only judge the addresses it found.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from urllib.parse import urlsplit

from starlette.datastructures import Secret

from core.products import PRODUCTS
from core.webhooks import Filter, check_secret

# The longest wait between two attempts: later retries come every two hours until the window
# closes, so an endpoint that is down for a day gets its events within two hours of coming back.
MAX_RETRY_DELAY = 7200.0


@dataclass(frozen=True)
class Endpoint:
    """One FORWARD_URL. Its consumer group is named after the URL (not its position), so
    reordering FORWARD_URL neither loses nor repeats an endpoint's events; metrics label it
    by position (`index`), which names no host."""

    index: int
    url: str

    @property
    def label(self) -> str:
        return str(self.index)

    @property
    def group(self) -> str:
        return "ep-" + hashlib.sha256(self.url.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ForwardSettings:
    urls: tuple[str, ...]
    # The `whsec_...` secret (its repr hides it); None when forwarding is off.
    secret: Secret | None
    allow_insecure: bool
    filter: Filter
    timeout: float
    max_response_bytes: int
    concurrency: int
    first_retry: float
    retry_window: float
    dead_max: int
    backfill: float
    outbox_max_events: int
    # (provider, product) -> seconds; 0: no timer for that product.
    delivery_timeouts: dict[tuple[str, str], int]

    @classmethod
    def from_config(cls, config: Callable[..., object]) -> ForwardSettings:
        """From starlette's Config (as core.settings reads every other variable)."""

        def lst(value: str) -> tuple[str, ...]:
            return tuple(item.strip() for item in value.split(",") if item.strip())

        default_timeout = config("DELIVERY_TIMEOUT", cast=int, default=0)
        timeouts = {}
        for provider, product in PRODUCTS:
            by_provider = config(
                f"DELIVERY_TIMEOUT_{_name(provider)}", cast=int, default=default_timeout
            )
            timeouts[(provider, product)] = config(
                f"DELIVERY_TIMEOUT_{_name(provider)}_{_name(product)}",
                cast=int,
                default=by_provider,
            )
        secret = str(config("FORWARD_SECRET", default="")).strip()
        return cls(
            urls=config("FORWARD_URL", cast=lst, default=""),
            secret=Secret(secret) if secret else None,
            allow_insecure=config("FORWARD_ALLOW_INSECURE", cast=bool, default=False),
            filter=Filter(
                providers=config("FORWARD_PROVIDERS", cast=lst, default=""),
                products=config("FORWARD_PRODUCTS", cast=lst, default=""),
                types=config("FORWARD_EVENTS", cast=lst, default=""),
            ),
            timeout=config("FORWARD_TIMEOUT", cast=float, default=10.0),
            max_response_bytes=config("FORWARD_MAX_RESPONSE_BYTES", cast=int, default=64 * 1024),
            concurrency=config("FORWARD_CONCURRENCY", cast=int, default=8),
            first_retry=config("FORWARD_FIRST_RETRY", cast=float, default=2.0),
            retry_window=config("FORWARD_RETRY_WINDOW", cast=float, default=2 * 86400.0),
            dead_max=config("FORWARD_DEAD_MAX", cast=int, default=10_000),
            backfill=config("FORWARD_BACKFILL", cast=float, default=3600.0),
            outbox_max_events=config("OUTBOX_MAX_EVENTS", cast=int, default=100_000),
            delivery_timeouts=timeouts,
        )._checked()

    def _checked(self) -> ForwardSettings:
        if self.urls and self.secret is None:
            raise ValueError("FORWARD_URL needs FORWARD_SECRET (whsec_...) to sign the events")
        if self.secret is not None:
            check_secret(str(self.secret))
        providers = {p for p, _ in PRODUCTS}
        names = {n for _, n in PRODUCTS}
        for variable, given, known in (
            ("FORWARD_PROVIDERS", self.filter.providers, providers),
            ("FORWARD_PRODUCTS", self.filter.products, names),
        ):
            if set(given) - known:
                raise ValueError(f"{variable}: unknown {sorted(set(given) - known)}")
        if len(set(self.urls)) != len(self.urls):
            raise ValueError("FORWARD_URL lists an endpoint twice")
        for url in self.urls:
            check_url(url, self.allow_insecure)
        for name, value in (
            ("FORWARD_TIMEOUT", self.timeout),
            ("FORWARD_FIRST_RETRY", self.first_retry),
            ("FORWARD_RETRY_WINDOW", self.retry_window),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be above 0")
        for name, number in (
            ("FORWARD_MAX_RESPONSE_BYTES", self.max_response_bytes),
            ("FORWARD_CONCURRENCY", self.concurrency),
            ("FORWARD_DEAD_MAX", self.dead_max),
            ("OUTBOX_MAX_EVENTS", self.outbox_max_events),
        ):
            if number < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.backfill < 0 or any(t < 0 for t in self.delivery_timeouts.values()):
            raise ValueError("FORWARD_BACKFILL and DELIVERY_TIMEOUT* must be 0 or more")
        return self

    @property
    def outbox_bound(self) -> int:
        """What the apply and timer scripts keep in the outbox: nothing while no endpoint
        is configured (no FORWARD_URL), so an unused outbox costs no memory."""
        return self.outbox_max_events if self.urls else 0

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(Endpoint(i, url) for i, url in enumerate(self.urls))

    def delivery_timeout_ms(self, provider: str, product: str) -> int:
        return self.delivery_timeouts.get((provider, product), 0) * 1000

    @property
    def claim_after(self) -> float:
        """An event a forwarder took and neither delivered nor rescheduled within this long
        was taken by a forwarder that died: another one takes it over."""
        return 2 * self.timeout + 5


def _name(text: str) -> str:
    return text.upper().replace("-", "_")


# Checking endpoints ---------------------------------------------------------------------


def check_url(url: str, allow_insecure: bool) -> str:
    """The URL's host, or ValueError: https only, a host, no credentials, and no literal
    private, loopback or otherwise non-public address, unless `allow_insecure`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError(f"FORWARD_URL {url[:80]!r} is not a URL") from None
    host = parts.hostname
    if not host or parts.scheme not in ("https", "http"):
        raise ValueError(f"FORWARD_URL {url[:80]!r} is not an http(s) URL with a host")
    if parts.username or parts.password:
        raise ValueError("FORWARD_URL must not carry credentials (the signature authenticates)")
    if port == 0:
        raise ValueError(f"FORWARD_URL {url[:80]!r}: port 0")
    if allow_insecure:
        return host
    if parts.scheme != "https":
        raise ValueError(
            f"FORWARD_URL {url[:80]!r} is not https (FORWARD_ALLOW_INSECURE=true for development)"
        )
    try:
        literal = ip_address(host)
    except ValueError:
        return host  # a name: its addresses are judged when it is resolved
    if not is_public(literal):
        raise ValueError(
            f"FORWARD_URL {url[:80]!r} is a private or loopback address"
            " (FORWARD_ALLOW_INSECURE=true for development)"
        )
    return host


def is_public(address: IPv4Address | IPv6Address | str) -> bool:
    """Globally routable unicast: not private, loopback, link-local (cloud metadata),
    carrier-grade NAT, reserved, unspecified or multicast; IPv4-mapped IPv6 judged as IPv4."""
    ip = ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def public_addresses(addresses: Iterable[str]) -> list[str]:
    return [a for a in addresses if is_public(a.split("%", 1)[0])]


# The retry schedule -----------------------------------------------------------------------


def retry_delay(attempts: int, first: float, rnd: random.Random | None = None) -> float:
    """Seconds before the next try after `attempts` failed ones: `first`, doubling, at most
    MAX_RETRY_DELAY, with up to 10% jitter so endpoints coming back are not hit in step."""
    base = min(first * 2 ** max(0, attempts - 1), MAX_RETRY_DELAY)
    return base * (1 + 0.1 * (rnd or random).random())
