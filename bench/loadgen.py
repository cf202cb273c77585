"""An open-loop HTTP load generator: callbacks at a fixed rate, whatever the server answers.

`python -m bench.loadgen --url http://127.0.0.1:8000 --token T --rate 2000 --seconds 60`

Request k is due at `start + k / rate`, and its latency is measured from that due time to the
end of its answer, so a server that stalls is charged for every request it held up (no
coordinated omission, unlike wrk's closed loop, where a slow answer delays the next send and
hides the wait). Due requests go to whichever of the keep-alive HTTP/1.1 connections is free
(spread over every `--url`, one per web process); a request that waits for a connection waits
on the clock too. `max_wait_ms` shows how long the longest one waited, `max_send_lag_ms`
how late the generator itself fell behind (its own CPU): when that is large the figures
measure the generator, not the server.

Every message is fresh (ids carry a random run tag) and gets `stages` callbacks in turn:
Verihubs WhatsApp OTP GETs with the callback token (sent -> delivered -> verified), and with
`--telnyx F` a fraction F of the messages are Ed25519-signed Telnyx Verify webhooks
(verify.sent -> verify.delivered -> verification.complete accepted) instead. Consecutive
requests are one message's callbacks, sent a request interval apart on different connections:
they may arrive in any order, as providers' do.

Prints (or writes with --json) the achieved rate, ack latency p50/p99/max and answers by
status; with --masks, a file of one byte per message, bit j set when its j-th callback was
answered 200 (what bench.e2e checks the stored state against).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import time
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import orjson
from nacl.signing import SigningKey

VERIHUBS_CODES = (1, 2, 4)  # sent, delivered, verified (WhatsApp OTP V2's table)
TELNYX_EVENTS = (
    ("verify.sent", {"delivery_status": "sent"}),
    ("verify.delivered", {"delivery_status": "delivered"}),
    ("verification.complete", {"status": "accepted"}),
)
STAGES = len(VERIHUBS_CODES)
# The benchmark's own Telnyx signing key: the web processes are given its public half.
TELNYX_KEY = SigningKey(bytes(range(100, 132)))
TELNYX_PUBLIC_KEY = base64.b64encode(bytes(TELNYX_KEY.verify_key)).decode()
TELNYX_CHANNEL = "sms"
TICK = 0.001


def message_id(run: int, i: int) -> str:
    """A UUID-shaped id (as Verihubs sends session ids), unique per run tag and index."""
    return f"{run:08x}-{(i >> 48) & 0xFFFF:04x}-4b5e-9f1a-{i & 0xFFFFFFFFFFFF:012x}"


def is_telnyx(i: int, fraction: float) -> bool:
    """Spreads a fraction of the messages evenly (message i is Telnyx when the running
    count of fraction * i steps up)."""
    return fraction > 0 and int((i + 1) * fraction) > int(i * fraction)


def expected(run: int, i: int, fraction: float) -> tuple[str, str, str, tuple[int, ...]]:
    """Provider, product, message id and canonical codes of message i, in sending order."""
    if is_telnyx(i, fraction):
        # Telnyx's events map to sent (1), delivered (2), verified (4): receiver/providers.
        return "telnyx", TELNYX_CHANNEL, message_id(run, i), VERIHUBS_CODES
    return "verihubs", "whatsapp-otp", message_id(run, i), VERIHUBS_CODES


@dataclass(frozen=True)
class Plan:
    rate: float
    seconds: float
    token: str
    run: int
    telnyx: float = 0.0

    @property
    def total(self) -> int:
        return int(self.rate * self.seconds)

    @property
    def messages(self) -> int:
        return -(-self.total // STAGES)

    def request(self, k: int, host: bytes) -> bytes:
        i, stage = divmod(k, STAGES)
        sid = message_id(self.run, i)
        if is_telnyx(i, self.telnyx):
            return _telnyx(sid, stage, host)
        path = (
            f"/callbacks/verihubs/whatsapp-otp/{self.token}"
            f"?session_id={sid}&status={VERIHUBS_CODES[stage]}"
        )
        return b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path.encode(), host)


def _telnyx(sid: str, stage: int, host: bytes) -> bytes:
    event, extra = TELNYX_EVENTS[stage]
    occurred = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    payload = {"id": sid, "type": TELNYX_CHANNEL, **extra}
    body = orjson.dumps(
        {"data": {"event_type": event, "occurred_at": occurred, "payload": payload}}
    )
    stamp = str(int(time.time())).encode()
    signature = base64.b64encode(TELNYX_KEY.sign(stamp + b"|" + body).signature)
    head = (
        b"POST /callbacks/telnyx HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\ntelnyx-signature-ed25519: %s\r\ntelnyx-timestamp: %s\r\n\r\n"
    )
    return head % (host, len(body), signature, stamp) + body


@dataclass
class Result:
    rate: float
    seconds: float
    connections: int
    run: int
    messages: int
    scheduled: int
    sent: int = 0
    answered: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    send_rate: float = 0.0  # requests sent per second over the load window
    answer_rate: float = 0.0  # answers per second, first due time to last answer
    latency_ms: dict[str, float] = field(default_factory=dict)
    max_send_lag_ms: float = 0.0
    max_wait_ms: float = 0.0
    generator_cpu_s: float = 0.0
    ended_at: float = 0.0  # wall clock (time.time()) of the last answer
    elapsed_s: float = 0.0  # from the first due time to the last answer

    @property
    def accepted(self) -> int:
        return self.statuses.get("200", 0)


def percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "p50": at(0.50),
        "p90": at(0.90),
        "p99": at(0.99),
        "p999": at(0.999),
        "max": ordered[-1],
        "mean": sum(ordered) / len(ordered),
    }


class _Run:
    def __init__(self, plan: Plan, urls: Sequence[str], connections: int, timeout: float) -> None:
        self.plan, self.timeout = plan, timeout
        self.targets = [_target(u) for u in urls]
        self.connections = max(connections, len(self.targets))
        self.due: asyncio.Queue[int | None] = asyncio.Queue()
        self.latencies = array("d")
        self.statuses: Counter[str] = Counter()
        # Times are time.monotonic(), not the loop's clock: uvloop's is in whole milliseconds.
        self.masks = bytearray(plan.messages)
        self.sent = 0
        self.send_lag = 0.0
        self.max_wait = 0.0
        self.last_answer = 0.0
        self.start = 0.0

    def due_at(self, k: int) -> float:
        return self.start + k / self.plan.rate

    async def schedule(self) -> None:
        total, rate = self.plan.total, self.plan.rate
        k = 0
        while k < total:
            now = time.monotonic()
            due = min(total, int((now - self.start) * rate) + 1)
            if due > k:
                self.send_lag = max(self.send_lag, now - self.due_at(k))
                for n in range(k, due):
                    self.due.put_nowait(n)
                k = due
            if k < total:
                # uvloop's timers have millisecond resolution: a shorter sleep returns at
                # once and the loop would spin; what falls due meanwhile goes out together.
                await asyncio.sleep(max(TICK, self.due_at(k) - time.monotonic()))
        for _ in range(self.connections):
            self.due.put_nowait(None)

    async def connection(self, index: int) -> None:
        host, port = self.targets[index % len(self.targets)]
        header = f"{host}:{port}".encode()
        reader = writer = None
        while (k := await self.due.get()) is not None:
            due = self.due_at(k)
            picked = time.monotonic()
            self.max_wait = max(self.max_wait, picked - due)
            status = "error"
            try:
                async with asyncio.timeout(self.timeout):
                    if writer is None:
                        reader, writer = await asyncio.open_connection(host, port)
                    writer.write(self.plan.request(k, header))
                    self.sent += 1
                    status, close = await _answer(reader)
            except TimeoutError:
                status, close = "timeout", True
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                status, close = f"error:{type(exc).__name__}", True
            done = time.monotonic()
            self.last_answer = max(self.last_answer, done)
            self.statuses[status] += 1
            self.latencies.append((done - due) * 1000)
            if status == "200":
                i, stage = divmod(k, STAGES)
                self.masks[i] |= 1 << stage
            if close and writer is not None:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    async def run(self) -> Result:
        self.start = time.monotonic() + 0.05
        wall_start = time.time() + 0.05
        cpu = time.process_time()
        tasks = [asyncio.create_task(self.connection(i)) for i in range(self.connections)]
        await self.schedule()
        await asyncio.gather(*tasks)
        plan = self.plan
        elapsed = max(self.last_answer - self.start, 1e-9)
        return Result(
            rate=plan.rate,
            seconds=plan.seconds,
            connections=self.connections,
            run=plan.run,
            messages=plan.messages,
            scheduled=plan.total,
            sent=self.sent,
            answered=sum(n for s, n in self.statuses.items() if s[0].isdigit()),
            statuses=dict(self.statuses),
            send_rate=self.sent / plan.seconds,
            answer_rate=len(self.latencies) / elapsed,
            latency_ms=percentiles(self.latencies),
            max_send_lag_ms=self.send_lag * 1000,
            max_wait_ms=self.max_wait * 1000,
            generator_cpu_s=time.process_time() - cpu,
            ended_at=wall_start + (self.last_answer - self.start),
            elapsed_s=elapsed,
        )


def _target(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{url}: only http://host:port")
    return parts.hostname, parts.port or 80


async def _answer(reader: asyncio.StreamReader) -> tuple[str, bool]:
    """Reads one response; its status and whether the server closes the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = lines[0].split(b" ", 2)[1].decode()
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
        elif name == b"transfer-encoding":
            raise ValueError("chunked answers are not read")  # ours always send a length
    if length:
        await reader.readexactly(length)
    return status, close


def run(
    plan: Plan,
    urls: Sequence[str],
    connections: int = 64,
    timeout: float = 10.0,
    masks: Path | None = None,
) -> Result:
    """Runs the plan to the end (every due request sent and answered, or failed)."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        state = _Run(plan, urls, connections, timeout)
        result = runner.run(state.run())
    if masks is not None:
        masks.write_bytes(bytes(state.masks))
    return result


def summary(r: Result) -> str:
    lat = r.latency_ms
    statuses = ", ".join(f"{s}: {n:,}" for s, n in sorted(r.statuses.items()))
    return (
        f"rate {r.rate:,.0f}/s for {r.seconds:g} s over {r.connections} connections:"
        f" sent {r.send_rate:,.0f}/s, answered {r.answer_rate:,.0f}/s\n"
        f"ack latency ms: p50 {lat.get('p50', 0):.1f}  p99 {lat.get('p99', 0):.1f}"
        f"  max {lat.get('max', 0):.1f}  (longest wait for a connection {r.max_wait_ms:.1f},"
        f" generator behind by up to {r.max_send_lag_ms:.1f})\n"
        f"answers: {statuses}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--url", action="append", required=True,
                        help="a web process's base URL (repeat for several)")  # fmt: skip
    parser.add_argument("--token", required=True, help="the CALLBACK_TOKEN")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    parser.add_argument("--telnyx", type=float, default=0.0,
                        help="fraction of the messages sent as signed Telnyx webhooks")  # fmt: skip
    parser.add_argument("--run", type=lambda s: int(s, 16), default=None,
                        help="run tag (hex) in every message id; random by default")  # fmt: skip
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--masks", type=Path, help="per message, the callbacks answered 200")
    args = parser.parse_args(argv)
    tag = args.run if args.run is not None else int.from_bytes(os.urandom(4), "big")
    plan = Plan(args.rate, args.seconds, args.token, tag, args.telnyx)
    result = run(plan, args.url, args.connections, args.timeout, args.masks)
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2) + "\n")
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
