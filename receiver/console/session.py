"""The console's session: a signed cookie, and the CSRF token that goes with it.

Stateless, so any number of web processes on any machine accept each other's sessions: the
cookie is `<issued>.<nonce>.<mac>`, the MAC an HMAC-SHA256 keyed by the admin token that
logged in. Removing a token from ADMIN_TOKEN (a rotation) therefore ends every session it
opened; logging out clears the cookie. The CSRF token is a second HMAC of the same nonce
under the same key: a page's forms carry it, every POST must give it back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from starlette.datastructures import Secret

from receiver.credentials import Tokens

COOKIE = "otp_console"
# Before login: the login form's own CSRF token, echoed by the form (double submit).
LOGIN_COOKIE = "otp_console_login"
PATH = "/console"
# A working day and a bit: on-call logs in again after that.
MAX_AGE_SECONDS = 12 * 3600


@dataclass(frozen=True)
class Session:
    issued: int
    nonce: str
    key: bytes

    @property
    def csrf(self) -> str:
        return _mac(self.key, f"csrf|{self.nonce}")


def open_session(token: str, now: float | None = None) -> tuple[Session, str]:
    """A new session for a token that was just checked, and its cookie value."""
    issued = int(time.time() if now is None else now)
    session = Session(issued, secrets.token_urlsafe(16), _key(token))
    return session, f"{issued}.{session.nonce}.{_mac(session.key, _signed(issued, session.nonce))}"


def read_session(
    value: str | None, tokens: Tokens | None, now: float | None = None
) -> Session | None:
    """The session a cookie stands for: None when absent, forged, expired, or opened with a
    token that is no longer configured."""
    if not value or tokens is None or len(value) > 200:
        return None
    issued_text, _, rest = value.partition(".")
    nonce, _, mac = rest.partition(".")
    if not (issued_text.isascii() and issued_text.isdigit() and nonce and mac):
        return None
    issued = int(issued_text)
    age = (time.time() if now is None else now) - issued
    if not 0 <= age < MAX_AGE_SECONDS:
        return None
    found = None
    for secret in tokens.secrets:  # every one compared: the time tells nothing of which
        key = _key(str(secret))
        if hmac.compare_digest(_mac(key, _signed(issued, nonce)), mac):
            found = Session(issued, nonce, key)
    return found


def same_token(given: str, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def new_login_token() -> str:
    return secrets.token_urlsafe(16)


def _signed(issued: int, nonce: str) -> str:
    return f"session|{issued}|{nonce}"


def _key(token: str | Secret) -> bytes:
    # Derived, so the token itself is never the MAC key of anything a client sees.
    return hmac.new(str(token).encode(), b"otp-tracker console v1", hashlib.sha256).digest()


def _mac(key: bytes, message: str) -> str:
    digest = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
