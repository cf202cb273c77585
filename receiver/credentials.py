"""Each provider's credentials, decoded once at start-up, and who may call at all."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import TypeVar

from nacl.signing import VerifyKey
from starlette.datastructures import Secret
from twilio.request_validator import RequestValidator

from core.settings import VERIHUBS_PRODUCTS, Settings
from receiver.errors import Rejected
from receiver.providers import telnyx

Network = IPv4Network | IPv6Network
T = TypeVar("T")


@dataclass(frozen=True)
class Tokens:
    """Tokens valid at once (a rotation: the new one added before the old one is removed)."""

    secrets: tuple[Secret, ...]
    # Encoded once, not on every callback.
    encoded: tuple[bytes, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoded", tuple(str(s).encode() for s in self.secrets))

    @classmethod
    def of(cls, secrets: tuple[Secret, ...]) -> Tokens | None:
        """None for no token at all: what it guards stays closed."""
        return cls(secrets) if secrets else None

    def matches(self, given: str) -> bool:
        """Compared with every token, each in constant time: the time taken tells nothing of
        which one (if any) it matched."""
        candidate, found = given.encode(), False
        for secret in self.encoded:
            found |= hmac.compare_digest(candidate, secret)
        return found


@dataclass(frozen=True)
class Credentials:
    # Per Verihubs product: its own CALLBACK_TOKEN_<PRODUCT> list, else CALLBACK_TOKEN's.
    product_tokens: Mapping[str, Tokens]
    callback_tokens: Tokens | None
    admin_tokens: Tokens | None
    metrics_tokens: Tokens | None
    telnyx_key: VerifyKey | None
    meta_secret: Secret | None
    meta_verify_token: Secret | None
    twilio: RequestValidator | None
    allow_unauthenticated: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> Credentials:
        key, twilio_token = settings.telnyx_public_key, settings.twilio_auth_token
        return cls(
            # Settings already read an empty secret as none: its endpoint stays closed.
            product_tokens={
                product: Tokens(tokens)
                for product, tokens in settings.product_callback_tokens.items()
            },
            callback_tokens=Tokens.of(settings.callback_tokens),
            admin_tokens=Tokens.of(settings.admin_tokens),
            metrics_tokens=Tokens.of(settings.metrics_tokens),
            telnyx_key=telnyx.public_key(str(key)) if key is not None else None,
            meta_secret=settings.meta_app_secret,
            meta_verify_token=settings.meta_verify_token,
            twilio=RequestValidator(str(twilio_token)) if twilio_token is not None else None,
            allow_unauthenticated=settings.allow_unauthenticated_callbacks,
        )

    def missing(self) -> list[str]:
        """Providers (or Verihubs products, as `verihubs/<product>`, when only some have
        their own token) whose endpoint is closed (or, opted out, open to anyone)."""
        configured = {
            "telnyx": self.telnyx_key,
            "meta": self.meta_secret,
            "twilio": self.twilio,
        }
        missing = [provider for provider, secret in configured.items() if secret is None]
        uncovered = [p for p in VERIHUBS_PRODUCTS if self.verihubs_tokens(p) is None]
        if len(uncovered) == len(VERIHUBS_PRODUCTS):
            return ["verihubs", *missing]
        return [*(f"verihubs/{p}" for p in uncovered), *missing]

    def verihubs_tokens(self, product: str) -> Tokens | None:
        """The tokens a product's callback URL accepts (an unknown product: CALLBACK_TOKEN's,
        so that a wrong token is refused as such before the product)."""
        return self.product_tokens.get(product, self.callback_tokens)

    def required(self, secret: T | None) -> T | None:
        """The secret to check; without one the endpoint is closed (404) unless the operator
        opted out of authentication, and then there is nothing to check (None)."""
        if secret is None and not self.allow_unauthenticated:
            raise closed()
        return secret


def closed() -> Rejected:
    return Rejected("callbacks_closed", "not found", 404)


class Sources:
    """Optional allowlists of source networks, per provider (empty: any source)."""

    def __init__(self, allowed: Mapping[str, tuple[str, ...]]) -> None:
        self.networks: dict[str, tuple[Network, ...]] = {
            provider: tuple(ip_network(n, strict=False) for n in nets)
            for provider, nets in allowed.items()
            if nets
        }

    def check(self, provider: str, host: str | None) -> None:
        networks = self.networks.get(provider)
        if not networks:
            return
        try:
            address = ip_address(host or "")
        except ValueError:
            address = None
        if address is None or not any(address in n for n in networks):
            raise Rejected("source_not_allowed", "forbidden", 403)
