"""The forwarder process (`python -m workers.forward`, the Procfile's `forward`).

It delivers the outbox's events to each FORWARD_URL, signed per Standard Webhooks, and runs
the delivery timer. Per endpoint, independently of the others and of the apply path:

- a consumer group on the outbox stream (named after the URL) from which new events are
  read and tried at once, each settled on its own: at most FORWARD_CONCURRENCY attempts in
  flight per endpoint (first attempts, retries and take-overs together), a new one started
  as soon as one ends, so a slow answer holds one slot and not the others;
- an event whose attempt fails is moved, in one transaction with its acknowledgement, to the
  endpoint's retry set with its body and attempt count; retries back off exponentially
  (FORWARD_FIRST_RETRY, doubling, at most two hours) for FORWARD_RETRY_WINDOW, then the
  event is dead: kept (at most FORWARD_DEAD_MAX) until `python -m workers.forward replay`;
- an event taken by a forwarder that died (SIGKILL, lost machine) is taken over once it has
  been idle for 2 * FORWARD_TIMEOUT + 5 s, from the stream's pending list or the retry set.

So delivery is at least once, with the event id (`webhook-id`) the same on every copy.
Without FORWARD_URL nothing is sent nor kept in the outbox (ForwardSettings.outbox_bound) and only
the timer runs.

Commands: `python -m workers.forward` (serve), `... dead` (each endpoint's backlog and dead
events), `... replay [--endpoint N]` (dead events back to their retry set, due now).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import structlog
from aiohttp.abc import AbstractResolver, ResolveResult
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, ResponseError

from core import counters, logs
from core.clock import now_ms
from core.forwarding import Endpoint, ForwardSettings, is_public, retry_delay
from core.keys import Keys
from core.outbox import endpoint_states
from core.redis import connect, connect_async
from core.settings import Settings
from core.webhooks import OutboxEvent, Signer
from workers.timers import Timers

log = structlog.get_logger("forward")
POLL = 0.5
BLOCK_MS = 1000
PAUSE_AFTER_ERROR = 1.0
# Consumers of dead forwarders, with nothing pending, are forgotten after this long.
CONSUMER_IDLE_MS = 3600_000
# How often the outbox is trimmed of what every endpoint has taken.
TRIM_EVERY = 5.0
HELD_SEP = "|"

# Takes the due entries of a retry set, leasing each for ARGV[3] ms (a forwarder that dies
# mid-attempt leaves it to be due again), and returns id, held value pairs.
TAKE_DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[3]), id)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[2], id)
end
return out
"""
# Keeps the dead set within ARGV[1] events, oldest dropped with their bodies.
TRIM_DEAD = """
local extra = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[1])
if extra <= 0 then return 0 end
local gone = redis.call('ZPOPMIN', KEYS[1], extra)
for i = 1, #gone, 2 do redis.call('HDEL', KEYS[2], gone[i]) end
return extra
"""
# Dead events back to the retry set, due now, with a fresh retry window.
REPLAY = """
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local held = redis.call('HGET', KEYS[2], id)
  if held then
    local a = string.find(held, '|', 1, true)
    local b = string.find(held, '|', a + 1, true)
    redis.call('HSET', KEYS[2], id, '0|' .. ARGV[1] .. '|' .. string.sub(held, b + 1))
    redis.call('ZADD', KEYS[3], ARGV[1], id)
  end
end
return #ids
"""


# HTTP ---------------------------------------------------------------------------------------


class GuardedResolver(AbstractResolver):
    """Resolves names on every new connection, keeping only public addresses (unless
    insecure is allowed): a name that starts resolving to a private address later (DNS
    rebinding) is refused too, not only at start-up."""

    def __init__(self, allow_insecure: bool) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self.allow_insecure = allow_insecure

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if self.allow_insecure:
            return found
        public = [r for r in found if is_public(r["host"])]
        if not public:
            raise OSError(f"{host} resolves to no public address")
        return public

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True)
class Attempt:
    result: str  # one of counters.FORWARD_RESULTS
    seconds: float


def result_of(status: int) -> str:
    if 200 <= status < 300:
        return "ok"
    if 400 <= status < 500:
        return "http_4xx"
    if 500 <= status < 600:
        return "http_5xx"
    return "error"  # 1xx, 3xx (redirects are not followed: a Location could be anywhere)


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    fs: ForwardSettings,
) -> Attempt:
    """One attempt: the whole exchange within FORWARD_TIMEOUT, at most
    FORWARD_MAX_RESPONSE_BYTES of the answer read (the rest is dropped with the connection)."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(fs.timeout):
            async with session.post(url, data=body, headers=headers, allow_redirects=False) as r:
                left = fs.max_response_bytes
                while left > 0 and await r.content.read(min(left, 8192)):
                    left = fs.max_response_bytes - r.content.total_bytes
                if not r.content.at_eof():
                    r.close()
                result = result_of(r.status)
    except TimeoutError:
        result = "timeout"
    except (aiohttp.ClientError, OSError, ValueError):
        result = "error"
    return Attempt(result, time.perf_counter() - started)


class Slots:
    """At most `size` attempts in flight, whichever loop of the endpoint starts them."""

    def __init__(self, size: int) -> None:
        self.size, self.busy = size, 0
        self._freed = asyncio.Event()

    @property
    def free(self) -> int:
        return self.size - self.busy

    async def wait_free(self) -> None:
        while self.busy >= self.size:
            self._freed.clear()
            await self._freed.wait()

    def take(self) -> None:
        self.busy += 1

    def give(self) -> None:
        self.busy -= 1
        self._freed.set()


class Deliverer:
    """Everything one endpoint needs: its reader, its retries and its take-overs."""

    def __init__(
        self,
        endpoint: Endpoint,
        fs: ForwardSettings,
        redis: Redis,
        session: aiohttp.ClientSession,
        signer: Signer,
        keys: Keys,
        consumer: str,
    ) -> None:
        self.endpoint, self.fs, self.redis, self.session = endpoint, fs, redis, session
        self.signer, self.keys, self.consumer = signer, keys, consumer
        self.group = endpoint.group
        self.retry_key = keys.forward_retry(self.group)
        self.held_key = keys.forward_held(self.group)
        self.dead_key = keys.forward_dead(self.group)
        self._take = redis.register_script(TAKE_DUE)
        self._trim = redis.register_script(TRIM_DEAD)
        self.lease_ms = int(fs.claim_after * 1000)
        # FORWARD_CONCURRENCY bounds the endpoint's attempts in flight, first ones, retries
        # and take-overs together: a failing endpoint cannot take more than its share.
        self.slots = Slots(fs.concurrency)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._buried = 0

    async def setup(self) -> None:
        """The endpoint's consumer group, created once: from FORWARD_BACKFILL ago, so events
        recorded shortly before the first start are delivered too (stream ids are ms)."""
        start = max(0, now_ms() - int(self.fs.backfill * 1000))
        try:
            await self.redis.xgroup_create(
                self.keys.outbox, self.group, id=f"{start}-0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self) -> None:
        await _forever(f"setup {self.endpoint.label}", self.setup, once=True)
        try:
            await asyncio.gather(
                _forever(f"read {self.endpoint.label}", self.read_new),
                _forever(f"retry {self.endpoint.label}", self.retry_due),
                _forever(f"claim {self.endpoint.label}", self.take_over),
            )
        finally:
            self.cancel_in_flight()

    # Attempts ------------------------------------------------------------------------------

    async def attempt(self, event_id: str, body: bytes) -> Attempt:
        headers = self.signer.headers(event_id, body)
        return await post(self.session, self.endpoint.url, body, headers, self.fs)

    def count(self, pipe: Pipeline, attempt: Attempt) -> None:
        label = self.endpoint.label
        pipe.hincrby(self.keys.counters, counters.FORWARD_ATTEMPTS.field(label, attempt.result), 1)
        bounds = counters.FORWARD_LATENCY.buckets
        i = next((j for j, b in enumerate(bounds) if attempt.seconds <= b), len(bounds))
        pipe.hincrby(self.keys.counters, counters.FORWARD_LATENCY.field(label, f"b{i}"), 1)
        ms = round(attempt.seconds * 1000)
        pipe.hincrby(self.keys.counters, counters.FORWARD_LATENCY.field(label, "sum"), ms)

    # In flight -----------------------------------------------------------------------------

    async def _start(self, step: Callable[[], Awaitable[None]]) -> None:
        """Starts one attempt as soon as a slot is free, and returns: each attempt settles on
        its own, so one slow answer holds one slot, not a whole batch (a healthy endpoint
        kept waiting for its slowest answer of eight fell behind a steady stream)."""
        await self.slots.wait_free()
        self.slots.take()
        task = asyncio.create_task(self._settled(step))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _settled(self, step: Callable[[], Awaitable[None]]) -> None:
        try:
            await step()
        except RedisError as exc:
            # Not settled: the event stays pending (or leased in the retry set) and is taken
            # over once idle, so it is tried again, not lost.
            log.warning(
                "redis unavailable", loop=f"attempt {self.endpoint.label}", error=type(exc).__name__
            )
        except Exception:
            log.exception("attempt failed unexpectedly", endpoint=self.endpoint.label)
        finally:
            self.slots.give()

    def cancel_in_flight(self) -> None:
        for task in list(self._in_flight):
            task.cancel()

    # New events ----------------------------------------------------------------------------

    async def read_new(self) -> None:
        while True:
            await self.slots.wait_free()
            reply = await self.redis.xreadgroup(
                self.group,
                self.consumer,
                {self.keys.outbox: ">"},
                count=self.slots.free,
                block=BLOCK_MS,
            )
            for _stream, entries in reply or []:
                await self.first_attempts(entries)

    async def first_attempts(self, entries: Sequence[tuple[str, dict[str, str] | None]]) -> None:
        skipped = []
        for entry_id, fields in entries:
            if not fields:
                skipped.append(entry_id)  # trimmed before it was read (OUTBOX_MAX_EVENTS)
                continue
            try:
                event = OutboxEvent.from_entry(entry_id, fields)
            except (KeyError, ValueError):
                log.warning("malformed outbox entry skipped", entry=entry_id)
                skipped.append(entry_id)
                continue
            if not self.fs.filter.allows(event):
                skipped.append(entry_id)
                continue
            await self._start(lambda e=event, i=entry_id: self._first(i, e))
        if skipped:
            await self.redis.xack(self.keys.outbox, self.group, *skipped)

    async def _first(self, entry_id: str, event: OutboxEvent) -> None:
        body = event.body()
        attempt = await self.attempt(event.id, body)
        now = now_ms()
        async with self.redis.pipeline(transaction=True) as pipe:
            self.count(pipe, attempt)
            if attempt.result != "ok":
                self._hold(pipe, event.id, 1, now, body.decode(), now)
            pipe.xack(self.keys.outbox, self.group, entry_id)
            await pipe.execute()

    def _hold(
        self, pipe: Pipeline, event_id: str, attempts: int, first: int, body: str, now: int
    ) -> None:
        delay = retry_delay(attempts, self.fs.first_retry)
        pipe.hset(self.held_key, event_id, HELD_SEP.join((str(attempts), str(first), body)))
        pipe.zadd(self.retry_key, {event_id: now + int(delay * 1000)})

    # Retries -------------------------------------------------------------------------------

    async def retry_due(self) -> None:
        while True:
            await self.slots.wait_free()
            taken = await self._take(
                keys=[self.retry_key, self.held_key],
                args=[now_ms(), self.slots.free, self.lease_ms],
            )
            if not taken:
                await asyncio.sleep(POLL)
                continue
            await self.retry(list(zip(taken[::2], taken[1::2], strict=True)))
            await self._bury_logged()

    async def retry(self, taken: list[tuple[str, str | None]]) -> None:
        for event_id, value in taken:
            if value is None:
                await self.redis.zrem(self.retry_key, event_id)  # its body was trimmed
                continue
            attempts, first, body = value.split(HELD_SEP, 2)
            await self._start(
                lambda i=event_id, a=int(attempts), f=int(first), b=body: self._again(i, a, f, b)
            )

    async def _again(self, event_id: str, attempts: int, first: int, body: str) -> None:
        attempt = await self.attempt(event_id, body.encode())
        now = now_ms()
        async with self.redis.pipeline(transaction=True) as pipe:
            self.count(pipe, attempt)
            if attempt.result == "ok":
                pipe.zrem(self.retry_key, event_id)
                pipe.hdel(self.held_key, event_id)
            elif now - first >= self.fs.retry_window * 1000:
                pipe.zrem(self.retry_key, event_id)
                pipe.zadd(self.dead_key, {event_id: now})
                value = HELD_SEP.join((str(attempts + 1), str(first), body))
                pipe.hset(self.held_key, event_id, value)
                self._buried += 1
            else:
                self._hold(pipe, event_id, attempts + 1, first, body, now)
            await pipe.execute()

    async def _bury_logged(self) -> None:
        """Events that died since the last call: logged together, the dead set trimmed."""
        buried, self._buried = self._buried, 0
        if not buried:
            return
        log.warning(
            "events exhausted their retries: kept for `python -m workers.forward replay`",
            endpoint=self.endpoint.label,
            events=buried,
        )
        dropped = await self._trim(keys=[self.dead_key, self.held_key], args=[self.fs.dead_max])
        if dropped:
            log.warning(
                "dead events over FORWARD_DEAD_MAX dropped",
                endpoint=self.endpoint.label,
                events=dropped,
            )

    # Events of forwarders that died ---------------------------------------------------------

    async def take_over(self) -> None:
        while True:
            cursor = "0-0"
            while True:
                reply = await self.redis.xautoclaim(
                    self.keys.outbox,
                    self.group,
                    self.consumer,
                    min_idle_time=self.lease_ms,
                    start_id=cursor,
                    count=self.fs.concurrency,
                )
                cursor, entries = reply[0], reply[1]
                if entries:
                    log.info(
                        "taking over events of a stopped forwarder",
                        endpoint=self.endpoint.label,
                        events=len(entries),
                    )
                    await self.first_attempts(entries)
                if cursor == "0-0":
                    break
            await self._forget_consumers()
            await asyncio.sleep(self.fs.claim_after / 2)

    async def _forget_consumers(self) -> None:
        for consumer in await self.redis.xinfo_consumers(self.keys.outbox, self.group):
            idle = consumer.get("inactive", consumer.get("idle", 0))
            if (
                consumer["name"] != self.consumer
                and int(consumer["pending"]) == 0
                and int(idle) > CONSUMER_IDLE_MS
            ):
                await self.redis.xgroup_delconsumer(self.keys.outbox, self.group, consumer["name"])


async def _forever(name: str, step: Callable[[], Awaitable[None]], once: bool = False) -> None:
    """Runs a loop again after a Redis outage or an unexpected error, a second later."""
    while True:
        try:
            await step()
            if once:
                return
        except RedisError as exc:
            log.warning("redis unavailable", loop=name, error=type(exc).__name__)
        except Exception:
            log.exception("forwarder loop failed, restarting", loop=name)
        await asyncio.sleep(PAUSE_AFTER_ERROR)


# The process ----------------------------------------------------------------------------------


async def check_endpoints(fs: ForwardSettings) -> None:
    """At start-up: names that resolve only to private or loopback addresses stop the
    forwarder (a misconfiguration); a name that does not resolve now is only logged (DNS may
    be down; every connection resolves again)."""
    resolver = GuardedResolver(fs.allow_insecure)
    try:
        for endpoint in fs.endpoints:
            host = urlsplit(endpoint.url).hostname or ""
            try:
                await resolver.resolve(host, 443)
            except OSError as exc:
                if "no public address" in str(exc):
                    raise SystemExit(
                        f"FORWARD_URL {endpoint.index}: {exc} (FORWARD_ALLOW_INSECURE=true for"
                        " development)"
                    ) from None
                log.warning(
                    "endpoint does not resolve yet", endpoint=endpoint.label, error=str(exc)
                )
    finally:
        await resolver.close()


def _stream_id(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


async def needed_from(redis: Redis, keys: Keys, groups: Sequence[str]) -> str | None:
    """The oldest outbox entry an endpoint still needs (pending: read, not yet settled; or
    the first it has not read); None while a group does not exist yet (keep everything)."""
    try:
        info = {g["name"]: g for g in await redis.xinfo_groups(keys.outbox)}
    except ResponseError:
        return None  # no outbox yet
    needed = []
    for group in groups:
        if group not in info:
            return None
        if int(info[group]["pending"]):
            needed.append((await redis.xpending(keys.outbox, group))["min"])
        else:
            ms, seq = _stream_id(info[group]["last-delivered-id"])
            needed.append(f"{ms}-{seq + 1}")
    return min(needed, key=_stream_id) if needed else None


async def trim_loop(redis: Redis, keys: Keys, groups: Sequence[str]) -> None:
    """Events every endpoint has taken leave the outbox (a failed one is held with its body
    in the endpoint's retry set), so in steady state it holds only what is on its way and
    OUTBOX_MAX_EVENTS is only the bound for an endpoint that falls far behind."""
    while True:
        oldest = await needed_from(redis, keys, groups)
        if oldest is not None:
            await redis.xtrim(keys.outbox, minid=oldest, approximate=False)
        await asyncio.sleep(TRIM_EVERY)


async def timer_loop(timers: Timers) -> None:
    while True:
        fired = await timers.fire_due()
        if fired:
            log.info("delivery timeouts emitted", events=fired)
        await asyncio.sleep(POLL)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    fs = settings.forward
    keys = settings.keys
    redis = connect_async(settings)
    timers = Timers(redis, keys, fs.outbox_bound)
    tasks = [asyncio.create_task(_forever("timer", lambda: timer_loop(timers)))]
    session = None
    try:
        if not fs.urls:
            log.info("FORWARD_URL unset: no event is sent nor kept in the outbox")
            await _forever("registry", lambda: redis.delete(keys.forward_endpoints), once=True)
        else:
            if fs.allow_insecure:
                log.warning(
                    "FORWARD_ALLOW_INSECURE=true: endpoints may be plain http and private or"
                    " loopback addresses (development only)"
                )
            await check_endpoints(fs)
            await _forever("registry", lambda: _register(redis, keys, fs), once=True)
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(fs.allow_insecure),
                limit=0,
                limit_per_host=fs.concurrency,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"user-agent": "otp-tracker-forwarder"},
            )
            signer = Signer(str(fs.secret))
            consumer = f"{socket.gethostname()}-{os.getpid()}"
            for endpoint in fs.endpoints:
                deliverer = Deliverer(endpoint, fs, redis, session, signer, keys, consumer)
                tasks.append(asyncio.create_task(deliverer.run()))
            groups = [e.group for e in fs.endpoints]
            tasks.append(
                asyncio.create_task(_forever("trim", lambda: trim_loop(redis, keys, groups)))
            )
            log.info("forwarding", endpoints=len(fs.endpoints))
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if session is not None:
            await session.close()
        await redis.aclose()


async def _register(redis: Redis, keys: Keys, fs: ForwardSettings) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.forward_endpoints)
        pipe.hset(keys.forward_endpoints, mapping={e.label: e.group for e in fs.endpoints})
        await pipe.execute()


async def replay(settings: Settings, endpoint: int | None) -> int:
    redis = connect_async(settings)
    script = redis.register_script(REPLAY)
    keys, total = settings.keys, 0
    try:
        for e in settings.forward.endpoints:
            if endpoint is not None and e.index != endpoint:
                continue
            while n := int(
                await script(
                    keys=[
                        keys.forward_dead(e.group),
                        keys.forward_held(e.group),
                        keys.forward_retry(e.group),
                    ],
                    args=[now_ms(), 1000],
                )
            ):
                total += n
    finally:
        await redis.aclose()
    return total


async def run(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.forward")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("dead", help="each endpoint's backlog and dead events")
    again = sub.add_parser("replay", help="dead events back to their retry set, due now")
    again.add_argument("--endpoint", type=int, help="index in FORWARD_URL (default: all)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    if args.command == "replay":
        print(f"replayed {asyncio.run(replay(settings, args.endpoint))} dead events")
        return 0
    if args.command == "dead":
        redis = connect(settings)
        for state in endpoint_states(redis, settings.keys):
            print(f"endpoint {state.endpoint}: backlog {state.backlog}, dead {state.dead}")
        return 0
    asyncio.run(run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
