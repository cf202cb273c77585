"""The `otp-tracker` commands. Errors are one line on stderr, never a traceback: exit code 2
for a bad argument or configuration, 1 for an unreachable Redis (or receiver) or a thing
that is not there."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import click
from redis.exceptions import RedisError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from core import products
from core.clock import iso, now_ms
from core.failed import JOB_ID, Failed, UnreadableBatch
from core.read import STATES, Reader
from core.settings import PROVIDERS
from receiver import admin
from receiver.errors import Rejected
from receiver.providers import fields
from tools.cli import config, simulating
from tools.cli import doctor as doctor_checks
from tools.cli.config import Config

# No markup: provider strings and error texts are printed as they are, never interpreted.
out = Console(highlight=False, markup=False)


class Failure(click.ClickException):
    """Something outside the command line is wrong (Redis away, no such batch): exit 1."""

    exit_code = 1


class Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RedisError as exc:
            lazy = ctx.find_object(Lazy)
            cfg = lazy.loaded if lazy else None
            where = config.redacted(cfg.settings.redis_url) if cfg else "(unknown)"
            # The exception's text, not its traceback; redis-py's names no password.
            raise Failure(f"Redis at {where}: {type(exc).__name__}: {exc}") from None


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Operate the OTP delivery tracker: messages, billing, failed batches, a callback
    simulator and a configuration check.

    Finds the Redis, tokens and URL that `make run` uses: environment variables first
    (REDIS_URL, ADMIN_TOKEN, CALLBACK_TOKEN, PORT, KEY_PREFIX, the providers' secrets), else
    what `make run` left in var/ (of the current directory, else of the project)."""
    ctx.obj = Lazy()


class Lazy:
    """The configuration, read when a command first needs it (never for --help)."""

    loaded: Config | None = None

    def get(self) -> Config:
        if self.loaded is None:
            self.loaded = config.load()
        return self.loaded


def cfg_of(ctx: click.Context) -> Config:
    lazy = ctx.find_object(Lazy)
    assert lazy is not None, "the group sets it"
    return lazy.get()


def emit_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


# message, messages --------------------------------------------------------------------------


@cli.command()
@click.argument("provider")
@click.argument("message_id")
@click.option("--json", "as_json", is_flag=True, help="JSON, as GET /messages/{provider}/{id}.")
@click.pass_context
def message(ctx: click.Context, provider: str, message_id: str, as_json: bool) -> None:
    """One message: state, billable flag, anomalies, and its history (every accepted
    callback, oldest first, the last 32 kept)."""
    if provider not in PROVIDERS:
        raise click.BadParameter(f"one of {', '.join(PROVIDERS)}", param_hint="PROVIDER")
    try:  # only an id a callback could have stored, as GET /messages/... checks it
        message_id = fields.message_id(message_id, "MESSAGE_ID")
    except Rejected as exc:
        raise click.BadParameter(exc.message, param_hint="MESSAGE_ID") from None
    cfg = cfg_of(ctx)
    view = Reader(cfg.redis(), cfg.settings.keys).message(provider, message_id)
    if view is None:
        raise Failure(f"no callback seen for {provider} message {message_id}")
    if as_json:
        emit_json(asdict(view))
        return
    facts = Table.grid(padding=(0, 2))
    facts.add_row("message", f"{view.provider} {view.message_id}")
    facts.add_row("product", view.product)
    facts.add_row("state", view.state)
    facts.add_row("billable", "yes" if view.billable else "no")
    facts.add_row("first seen", view.first_seen)
    if view.anomalies:
        facts.add_row("anomalies", ", ".join(f"{k} {v}" for k, v in view.anomalies.items()))
    out.print(facts)
    title = f"history: {len(view.history)} callbacks"
    if view.history_dropped:
        title += f" ({view.history_dropped} older ones not kept)"
    table = Table(title=title)
    for name in ("received", "provider time", "as sent", "status", "outcome", "code"):
        table.add_column(name, justify="right" if name == "code" else "left")
    for h in view.history:
        table.add_row(h.received, h.at, h.provider_status, h.status or "unknown", h.outcome,
                      str(h.code))  # fmt: skip
    out.print(table)


@cli.command()
@click.option("--state", metavar="LIST", help=f"Current state(s), comma list: {', '.join(STATES)}.")
@click.option("--provider", metavar="LIST", help=f"Comma list of {', '.join(PROVIDERS)}.")
@click.option("--product", metavar="LIST", help="Comma list of products (e.g. whatsapp-otp).")
@click.option("--since", metavar="WHEN", help="First received since: 1h, 15m, 7d or ISO 8601.")
@click.option("--until", metavar="WHEN", help="First received before: as --since.")
@click.option(
    "--limit",
    type=click.IntRange(1, admin.MAX_PAGE),
    default=admin.DEFAULT_PAGE,
    show_default=True,
    help="Messages per page.",
)
@click.option("--cursor", help="The next page: the cursor the previous one printed.")
@click.option("--json", "as_json", is_flag=True, help="JSON, as GET /messages.")
@click.pass_context
def messages(
    ctx: click.Context,
    state: str | None,
    provider: str | None,
    product: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """Tracked messages, newest first (by first receipt), from the search index: the
    filters of GET /messages."""
    now = now_ms()
    try:
        filters = {
            "states": admin._names(state, "state", STATES),
            "providers": admin._names(provider, "provider", PROVIDERS),
            "products": admin._names(product, "product", admin.PRODUCT_NAMES),
            "since_ms": admin._moment(since, "since", now),
            "until_ms": admin._moment(until, "until", now),
        }
    except Rejected as exc:
        raise click.BadParameter(exc.message) from None
    low, high = filters["since_ms"], filters["until_ms"]
    if low is not None and high is not None and low >= high:
        raise click.BadParameter("--since must be before --until")
    if cursor is not None and (not cursor or len(cursor) > admin.MAX_CURSOR):
        raise click.BadParameter("not a cursor this command printed", param_hint="--cursor")
    cfg = cfg_of(ctx)
    try:
        page = Reader(cfg.redis(), cfg.settings.keys).search(**filters, limit=limit, cursor=cursor)  # type: ignore[arg-type]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--cursor") from None
    if as_json:
        emit_json({"messages": [asdict(m) for m in page.messages], "next_cursor": page.next_cursor})
        return
    table = Table(title=f"{len(page.messages)} messages")
    for name in ("first received", "provider", "product", "message id", "state", "billable"):
        table.add_column(name, no_wrap=name == "message id")
    for m in page.messages:
        table.add_row(m.first_received, m.provider, m.product, m.message_id, m.state,
                      "yes" if m.billable else "no")  # fmt: skip
    out.print(table)
    if page.next_cursor:
        out.print(f"more: --cursor {page.next_cursor}")


# billing -----------------------------------------------------------------------------------


@cli.command()
@click.option("--month", metavar="YYYY-MM", help="A whole month (excludes --from/--to).")
@click.option("--from", "start", metavar="YYYY-MM-DD", help="First day (included).")
@click.option("--to", "end", metavar="YYYY-MM-DD", help="Last day (included).")
@click.option("--tz", metavar="ZONE", help="IANA time zone of the days (BILLING_TIMEZONE).")
@click.option("--csv", "as_csv", is_flag=True, help="CSV, as GET /billing?format=csv.")
@click.option("--json", "as_json", is_flag=True, help="JSON, as GET /billing.")
@click.pass_context
def billing(
    ctx: click.Context,
    month: str | None,
    start: str | None,
    end: str | None,
    tz: str | None,
    as_csv: bool,
    as_json: bool,
) -> None:
    """Billable messages per day (of the message's first callback, in --tz), provider and
    product: the rules of GET /billing. Default: the 31 days ending today."""
    cfg = cfg_of(ctx)
    try:
        zone = admin._zone(tz, cfg.settings.billing_timezone)
        first, last = admin._range(start, end, month, zone)
    except Rejected as exc:
        raise click.BadParameter(exc.message) from None
    rows = Reader(cfg.redis(), cfg.settings.keys).billing(first, last, zone)
    if as_csv:
        click.echo(admin._csv(rows), nl=False)
        return
    if as_json:
        days = [admin._json(r) for r in rows]
        emit_json({"from": first.isoformat(), "to": last.isoformat(), "tz": zone.key, "days": days})
        return
    table = Table(title=f"Billable messages {first} .. {last} ({zone.key})")
    for name in ("day", "provider", "product"):
        table.add_column(name)
    table.add_column("billable", justify="right")
    for row in rows:
        table.add_row(row.day.isoformat(), row.provider, row.product, str(row.billable))
    table.add_section()
    table.add_row("total", "", "", str(sum(r.billable for r in rows)))
    out.print(table)


# failed ------------------------------------------------------------------------------------


@cli.group(cls=Group)
def failed() -> None:
    """Failed batches (RQ's failed registry of the queue): list, show, replay.

    Replay is exact: a replayed batch's events already applied count nothing."""


def _failed(ctx: click.Context) -> Failed:
    cfg = cfg_of(ctx)
    return Failed(cfg.redis(), cfg.settings.queue_name)


def _job_id(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not JOB_ID.fullmatch(value):
        raise click.BadParameter("a job id is 1 to 64 of A-Z a-z 0-9 _ -")
    return value


@failed.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@click.pass_context
def failed_list(ctx: click.Context, as_json: bool) -> None:
    """Failed batches, newest first."""
    batches = _failed(ctx).list()
    if as_json:
        emit_json([asdict(b) for b in batches])
        return
    if not batches:
        out.print("no failed batches")
        return
    table = Table(title=f"{len(batches)} failed batches")
    for name in ("job", "failed at", "enqueued at"):
        table.add_column(name, no_wrap=True)
    table.add_column("events", justify="right")
    table.add_column("error")
    for b in batches:
        table.add_row(b.job_id, b.failed_at or "", b.enqueued_at or "", str(b.events), b.error)
    out.print(table)


@failed.command("show")
@click.argument("job", callback=_job_id)
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@click.pass_context
def failed_show(ctx: click.Context, job: str, as_json: bool) -> None:
    """The events of failed batch JOB, in the order they were written."""
    try:
        events = _failed(ctx).events(job)
    except (LookupError, UnreadableBatch) as exc:
        raise Failure(str(exc)) from None
    rows = [
        {
            "provider": e.provider,
            "product": e.product,
            "message_id": e.message_id,
            "code": e.code,
            "status": _status(e.provider, e.product, e.code),
            "at": iso(e.at_ms),
            "received": iso(e.received_ms),
        }
        for e in events
    ]
    if as_json:
        emit_json(rows)
        return
    table = Table(title=f"batch {job}: {len(rows)} events")
    for name in rows[0] if rows else ("provider",):
        table.add_column(name, justify="right" if name == "code" else "left")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    out.print(table)


@failed.command("replay")
@click.argument("job", required=False, callback=_job_id)
@click.option("--all", "every", is_flag=True, help="Replay every failed batch.")
@click.pass_context
def failed_replay(ctx: click.Context, job: str | None, every: bool) -> None:
    """Put failed batch JOB (or, with --all, every failed batch) back on the queue; the
    worker applies it again, exactly."""
    if (job is None) == (not every):
        raise click.UsageError("give one JOB, or --all")
    batches = _failed(ctx)
    if every:
        out.print(f"replayed {batches.replay_all()} failed batches")
        return
    try:
        batches.replay(job)  # type: ignore[arg-type]
    except LookupError as exc:
        raise Failure(str(exc)) from None
    out.print(f"replayed {job}")


def _status(provider: str, product: str, code: int) -> str:
    table = products.product(provider, product)
    status = table.status(code) if table else None
    return status.value if status else "unknown"


# simulate ----------------------------------------------------------------------------------


@cli.command()
@click.option("--url", help="The receiver (default: http://127.0.0.1:$PORT, PORT 8000).")
@click.option(
    "--seconds",
    type=click.FloatRange(0, simulating.MAX_SECONDS, min_open=True),
    default=60.0,
    show_default=True,
    help="How long new messages start (their callbacks then finish).",
)
@click.option(
    "--rate",
    type=click.FloatRange(0, simulating.MAX_RATE, min_open=True),
    default=20.0,
    show_default=True,
    help="New messages per second.",
)
@click.option(
    "--speed",
    type=click.FloatRange(0, 1000, min_open=True),
    default=1.0,
    show_default=True,
    help="Compresses each message's lifecycle in time.",
)
@click.option(
    "--providers",
    metavar="LIST",
    help="Comma list of verihubs,telnyx,meta,twilio (default: each one whose secret is set).",
)
@click.pass_context
def simulate(
    ctx: click.Context,
    url: str | None,
    seconds: float,
    rate: float,
    speed: float,
    providers: str | None,
) -> None:
    """Send realistic callbacks (mixed outcomes, duplicates, reordering, a few malformed)
    to a running receiver, signed with the configured secrets; a progress bar, then a table
    of the answers. Exit code 1 when any answer is not the one expected (200; 400 for the
    malformed ones sent on purpose).

    Telnyx callbacks need the signing key: TELNYX_PRIVATE_KEY or var/telnyx_private_key
    (`otp-tracker telnyx-keygen`), whose public key the receiver has as TELNYX_PUBLIC_KEY."""
    cfg = cfg_of(ctx)
    target = url or cfg.url
    if not target.startswith(("http://", "https://")):
        raise click.BadParameter("an http:// or https:// URL", param_hint="--url")
    sim = simulating.simulator(cfg, target, rate, speed, providers)
    simulating.check_receiver(target)
    out.print(f"simulating {', '.join(sim.enabled())} against {target}")
    simulating.run(sim, seconds, out)
    out.print(simulating.summary(sim))
    if sim.unexpected:
        out.print(f"{sim.unexpected} answers were not the expected ones")
        ctx.exit(1)


@cli.command("telnyx-keygen")
def telnyx_keygen() -> None:
    """Make the simulator's Telnyx signing key (once, in var/telnyx_private_key) and print the
    TELNYX_PUBLIC_KEY the receiver must have to accept its callbacks."""
    path, public, made = simulating.keygen()
    out.print(f"{'wrote' if made else 'kept'} {path} (the simulator's Telnyx private key)")
    out.print("start the receiver with it, e.g.:")
    out.print(f"TELNYX_PUBLIC_KEY={public} make run")


# doctor ------------------------------------------------------------------------------------


@cli.command()
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """Check what operators get wrong: Redis reachable, version >= 6.2, persistence,
    eviction policy, clock skew against Redis, providers open or closed, tokens,
    PUBLIC_URL for Twilio. One line per check; exit code 1 when any fails."""
    try:
        cfg = cfg_of(ctx)
    except click.UsageError as exc:  # the services would refuse to start on it
        checks = [doctor_checks.Check(doctor_checks.FAIL, "configuration", exc.message)]
    else:
        checks = [
            doctor_checks.Check(doctor_checks.OK, "configuration", "read"),
            *doctor_checks.run(cfg),
        ]
    styles = {
        doctor_checks.OK: "green",
        doctor_checks.WARN: "yellow",
        doctor_checks.FAIL: "bold red",
    }
    width = max(len(c.name) for c in checks)
    for check in checks:
        line = Text(f"{check.status:<4}  ", style=styles[check.status])
        line.append(f"{check.name:<{width}}  {check.detail}")
        out.print(line)
    if any(c.status == doctor_checks.FAIL for c in checks):
        ctx.exit(1)


def main() -> None:
    cli(prog_name="otp-tracker")
