"""Where the CLI finds what `make run` uses, without the operator exporting anything.

Environment variables first (REDIS_URL, ADMIN_TOKEN, CALLBACK_TOKEN, PORT, KEY_PREFIX, the
providers' secrets ...), read into core.settings.Settings as the services read them; for
what is unset, what `make run` (core/devrun.py) left in var/: var/redis_url, var/admin_token,
var/callback_token. var/ is the current directory's, else the project's (beside tools/).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import click
from redis import Redis

from core.redis import connect
from core.settings import Settings

PROJECT = Path(__file__).resolve().parents[2]
# Environment variable -> the file core/devrun.py keeps it in.
KEPT = {
    "REDIS_URL": "redis_url",
    "ADMIN_TOKEN": "admin_token",
    "CALLBACK_TOKEN": "callback_token",
    # The simulator's Telnyx signing key (otp-tracker simulate --telnyx-keygen writes it).
    "TELNYX_PRIVATE_KEY": "telnyx_private_key",
}
DEFAULT_PORT = "8000"


def var_dir(cwd: Path | None = None) -> Path:
    here = (cwd or Path.cwd()) / "var"
    return here if here.is_dir() else PROJECT / "var"


def environment(
    environ: Mapping[str, str] | None = None, var: Path | None = None
) -> dict[str, str]:
    """The environment, completed from var/ where a variable is unset."""
    env = dict(os.environ if environ is None else environ)
    var = var or var_dir()
    for name, file in KEPT.items():
        if env.get(name):
            continue
        if name == "REDIS_URL" and env.get("REDIS_SENTINELS"):
            continue  # the primary is found through the sentinels (core/redis.py)
        path = var / file
        if path.is_file() and (value := path.read_text().strip()):
            env[name] = value
    return env


@dataclass(frozen=True)
class Config:
    settings: Settings
    env: Mapping[str, str]

    @property
    def url(self) -> str:
        """The receiver `make run` starts: http://127.0.0.1:$PORT."""
        return f"http://127.0.0.1:{self.env.get('PORT') or DEFAULT_PORT}"

    def redis(self) -> Redis:
        if not self.settings.redis_url and not self.settings.redis_sentinels:
            raise click.ClickException(
                "no Redis: set REDIS_URL, or run from the project after `make run`"
                " (it leaves var/redis_url)"
            )
        return connect(self.settings)


def load(environ: Mapping[str, str] | None = None) -> Config:
    env = environment(environ)
    try:
        return Config(Settings.from_env(env), env)
    except ValueError as exc:  # the services refuse to start on it too
        raise click.UsageError(f"configuration: {exc}") from None


def redacted(url: str | None) -> str:
    """A Redis URL without its password, for messages."""
    if not url:
        return "(none)"
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return f"{scheme}{sep}{rest}"
