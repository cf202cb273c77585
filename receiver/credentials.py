"""Each provider's credentials, decoded once at start-up, and who may call at all."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import TypeVar

from nacl.signing import VerifyKey
from starlette.datastructures import Secret
from twilio.request_validator import RequestValidator

from core.settings import Settings
from receiver.errors import Rejected
from receiver.providers import telnyx

Network = IPv4Network | IPv6Network
T = TypeVar("T")


@dataclass(frozen=True)
class Credentials:
    callback_token: Secret | None
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
            callback_token=settings.callback_token,
            telnyx_key=telnyx.public_key(str(key)) if key is not None else None,
            meta_secret=settings.meta_app_secret,
            meta_verify_token=settings.meta_verify_token,
            twilio=RequestValidator(str(twilio_token)) if twilio_token is not None else None,
            allow_unauthenticated=settings.allow_unauthenticated_callbacks,
        )

    def missing(self) -> list[str]:
        """Providers whose endpoint is closed (or, opted out, open to anyone)."""
        configured = {
            "verihubs": self.callback_token,
            "telnyx": self.telnyx_key,
            "meta": self.meta_secret,
            "twilio": self.twilio,
        }
        return [provider for provider, secret in configured.items() if secret is None]

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
