"""`otp-tracker simulate` and `otp-tracker telnyx-keygen`: callbacks of every provider whose
secret the CLI has, signed as each provider signs them, against a running receiver.

Verihubs needs CALLBACK_TOKEN (or CALLBACK_TOKEN_<PRODUCT>), Meta META_APP_SECRET, Twilio
TWILIO_AUTH_TOKEN (signed over PUBLIC_URL where set), as the receiver has them. Telnyx signs
with its account's private key, which no receiver holds: the simulator takes one from
TELNYX_PRIVATE_KEY (base64 of the 32-byte Ed25519 seed) or var/telnyx_private_key, which
`otp-tracker telnyx-keygen` writes, printing the TELNYX_PUBLIC_KEY to start `make run` with.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import time
from pathlib import Path

import click
import httpx2 as httpx
from nacl.signing import SigningKey
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.settings import VERIHUBS_PRODUCTS
from tools.cli.config import Config, var_dir
from tools.simulate import PROVIDERS, Simulator, public_key

MAX_SECONDS = 24 * 3600
MAX_RATE = 10_000.0
SECRET_OF = {
    "verihubs": "CALLBACK_TOKEN",
    "telnyx": "TELNYX_PRIVATE_KEY (see `otp-tracker telnyx-keygen`)",
    "meta": "META_APP_SECRET",
    "twilio": "TWILIO_AUTH_TOKEN",
}


def telnyx_key(cfg: Config) -> SigningKey | None:
    encoded = cfg.env.get("TELNYX_PRIVATE_KEY")
    if not encoded:
        return None
    try:
        key = SigningKey(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError, TypeError):
        raise click.UsageError(
            "TELNYX_PRIVATE_KEY must be base64 of a 32-byte Ed25519 seed"
        ) from None
    configured = cfg.settings.telnyx_public_key
    if configured is not None and str(configured).strip() != public_key(key):
        raise click.UsageError(
            "TELNYX_PRIVATE_KEY is not the key of TELNYX_PUBLIC_KEY: every Telnyx callback"
            " would be refused (401)"
        )
    return key


def simulator(cfg: Config, url: str, rate: float, speed: float, wanted: str | None) -> Simulator:
    settings = cfg.settings
    token = str(settings.callback_tokens[0]) if settings.callback_tokens else None
    product_tokens = {p: str(t[0]) for p, t in settings.product_callback_tokens.items()}
    have = {
        "verihubs": token is not None or all(p in product_tokens for p in VERIHUBS_PRODUCTS),
        "telnyx": (key := telnyx_key(cfg)) is not None,
        "meta": settings.meta_app_secret is not None,
        "twilio": settings.twilio_auth_token is not None,
    }
    if wanted is None:
        providers = tuple(p for p in PROVIDERS if have[p])
    else:
        providers = tuple(dict.fromkeys(p.strip() for p in wanted.split(",") if p.strip()))
        unknown = [p for p in providers if p not in PROVIDERS]
        if unknown or not providers:
            raise click.BadParameter(
                f"providers are a comma list of {', '.join(PROVIDERS)}", param_hint="--providers"
            )
        missing = [p for p in providers if not have[p]]
        if missing:
            needs = "; ".join(f"{p} needs {SECRET_OF[p]}" for p in missing)
            raise click.BadParameter(needs, param_hint="--providers")
    if not providers:
        raise click.UsageError("no provider's secret is configured (CALLBACK_TOKEN: `make run`)")
    return Simulator(
        url,
        token or "",
        rate=rate,
        speed=speed,
        telnyx_key=key,
        meta_secret=str(settings.meta_app_secret) if settings.meta_app_secret else None,
        twilio_token=str(settings.twilio_auth_token) if settings.twilio_auth_token else None,
        public_url=settings.public_url,
        product_tokens=product_tokens,
        providers=providers,
    )


def check_receiver(url: str) -> None:
    try:
        httpx.get(url.rstrip("/") + "/healthz", timeout=3).raise_for_status()
    except httpx.HTTPError as exc:
        raise click.ClickException(f"receiver not reachable at {url}: {exc}") from None


def run(sim: Simulator, seconds: float, console: Console) -> None:
    async def go() -> None:
        task = asyncio.create_task(sim.run(seconds))
        start = time.monotonic()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            bar = progress.add_task("simulating", total=seconds)
            while not task.done():
                answered = sum(sim.answers.values())
                progress.update(
                    bar,
                    completed=min(time.monotonic() - start, seconds),
                    description=f"{answered} answered, {sim.pending()} pending",
                )
                await asyncio.sleep(0.2)
            progress.update(
                bar, completed=seconds, description=f"{sum(sim.answers.values())} answered"
            )
        await task

    asyncio.run(go())


def summary(sim: Simulator) -> Table:
    answers = sorted({a for _, a in sim.answers}, key=str)
    table = Table(title="Answers to the simulated callbacks")
    table.add_column("provider")
    for answer in answers:
        table.add_column(str(answer), justify="right")
    table.add_column("total", justify="right")
    for provider in PROVIDERS:
        row = [sim.answers.get((provider, a), 0) for a in answers]
        if any(row):
            table.add_row(provider, *map(str, row), str(sum(row)))
    return table


def keygen(var: Path | None = None) -> tuple[Path, str, bool]:
    """The simulator's Telnyx key in var/telnyx_private_key (made once): its path, the
    public key to configure, and whether it was made now."""
    path = (var or var_dir()) / "telnyx_private_key"
    made = not path.exists()
    if made:
        path.parent.mkdir(exist_ok=True)
        seed = bytes(SigningKey.generate())
        # Created 0600 from the start: never readable by others, not even for a moment.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(base64.b64encode(seed).decode() + "\n")
    key = SigningKey(base64.b64decode(path.read_text().strip()))
    return path, public_key(key), made
