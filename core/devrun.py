"""`make run`: everything on this machine, with Redis and tokens provided when missing.

Redis is REDIS_URL when set, else an embedded redis-server of our own (AOF, data in var/):
never a server that merely answers on 6379, whose data is someone else's. The URL used is
left in var/redis_url, where operator commands (rq, the tests of the README) find it.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from honcho.manager import Manager

from core.embedded import RedisServer

VAR = Path("var")
EMBEDDED_PORT = 6390
# Providers that sign their callbacks, and the secret each endpoint needs to open.
SIGNED = {"telnyx": "TELNYX_PUBLIC_KEY", "meta": "META_APP_SECRET", "twilio": "TWILIO_AUTH_TOKEN"}


def redis_url(env: dict[str, str]) -> tuple[str, RedisServer | None]:
    if env.get("REDIS_URL"):
        return env["REDIS_URL"], None
    server = RedisServer(VAR / "redis", port=EMBEDDED_PORT).start()
    return server.url, server


def remember(url: str) -> Path:
    """Where operator commands find the Redis `make run` uses: `$(cat var/redis_url)`."""
    VAR.mkdir(exist_ok=True)
    path = VAR / "redis_url"
    path.write_text(url + "\n")
    path.chmod(0o600)  # a REDIS_URL may carry a password
    return path


def token(name: str) -> str:
    """Generated once and kept under var/, so URLs given to providers stay valid."""
    path = VAR / name.lower()
    if not path.exists():
        VAR.mkdir(exist_ok=True)
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def procfile() -> dict[str, str]:
    lines = Path("Procfile").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line and not line.startswith("#"))


def main() -> int:
    env = dict(os.environ)
    # The Procfile's commands must find this virtual environment's uvicorn and python.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if env.get("REDIS_SENTINELS"):
        # The processes find the primary through Sentinel themselves (core/redis.py).
        url, embedded = (
            f"sentinel {env['REDIS_SENTINELS']} {env.get('REDIS_SENTINEL_MASTER')}",
            None,
        )
    else:
        url, embedded = redis_url(env)
        env["REDIS_URL"] = url
        remember(url)
    env.setdefault("CALLBACK_TOKEN", token("CALLBACK_TOKEN"))
    env.setdefault("ADMIN_TOKEN", token("ADMIN_TOKEN"))
    port = env.setdefault("PORT", "8000")
    base = f"http://127.0.0.1:{port}"
    where = " (embedded, data in var/redis)" if embedded else ""
    kept = "" if env.get("REDIS_SENTINELS") else "  (also in var/redis_url)"
    print(f"redis:        {url}{where}{kept}")
    for product in ("whatsapp-otp", "whatsapp-message", "sms-otp"):
        print(f"callback URL: {base}/callbacks/verihubs/{product}/{env['CALLBACK_TOKEN']}")
    for provider, secret in SIGNED.items():
        state = "" if env.get(secret) else f"  (closed until {secret} is set)"
        print(f"callback URL: {base}/callbacks/{provider}{state}")
    print(f"metrics:      {base}/metrics  (this process's: scrape every web process)")
    print(f"metrics:      {base}/metrics/shared  (what Redis holds: scrape one)")
    print(f"admin token:  {env['ADMIN_TOKEN']}  (Authorization: Bearer ...)", flush=True)
    manager = Manager()
    for name, command in procfile().items():
        manager.add_process(name, command.strip(), env=env)
    try:
        manager.loop()
    finally:
        if embedded:
            embedded.stop()
    return manager.returncode or 0


if __name__ == "__main__":
    sys.exit(main())
