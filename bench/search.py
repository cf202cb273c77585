"""Search with many messages tracked: p50/p99 of the index queries support and on-call ask,
and the bytes the index and the history cost per message.

`python -m bench.search [MESSAGES]` (1,000,000 by default); `make bench` runs it too.
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from redis import Redis

from core import keys
from core.clock import now_ms
from core.embedded import RedisServer
from core.events import Event
from core.read import Page, Reader
from workers.store import Store

HOUR, DAY = 3_600_000, 86_400_000
# Where an OTP's callbacks end: most delivered or verified, some failed.
ENDINGS = [(2,), (2, 3), (2, 3, 4), (6,), (2, 5), (12,)]
RUNS = 200


def populate(store: Store, messages: int, now: int) -> None:
    """`messages` WhatsApp OTPs received over the last 7 days, through the apply script."""
    rnd = random.Random(7)
    batch: list[Event] = []
    for i in range(messages):
        product = ("whatsapp-otp", "whatsapp-otp", "sms-otp", "whatsapp-message")[i % 4]
        at = now - rnd.randrange(7 * DAY - HOUR)
        for step, code in enumerate((1, *rnd.choice(ENDINGS))):
            t = at + step * 1500
            batch.append(Event("verihubs", product, f"{i:08x}-4b5e-9f1a-{i:012x}", code, t, t))
        if len(batch) >= 5000:
            store.apply(f"populate-{i}", batch)
            batch = []
    if batch:
        store.apply("populate-last", batch)


def history_bytes(redis: Redis, key: str) -> int:
    """What the history costs a message hash: its MEMORY USAGE with and without the ring
    (destructive: run last)."""
    with_history = redis.memory_usage(key, samples=0)
    ring = [f for f in redis.hkeys(key) if f.startswith(keys.MessageField.HISTORY_PREFIX.encode())]
    redis.hdel(key, keys.MessageField.HISTORY_COUNT, *ring)
    return with_history - redis.memory_usage(key, samples=0)


def a_day(reader: Reader, now: int, cursor: str | None = None) -> Page:
    """Everything of one product received in one day (the day before the last 24 h)."""
    return reader.search(
        products=["sms-otp"], since_ms=now - 2 * DAY, until_ms=now - DAY, cursor=cursor
    )


def timed(call: object, runs: int = RUNS) -> dict[str, float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "p50_ms": statistics.median(times),
        "p99_ms": times[int(len(times) * 0.99) - 1],
        "max_ms": times[-1],
    }


def run(messages: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp), durable=False).start()
        try:
            redis = Redis.from_url(server.url)
            store = Store(redis, 7 * 86_400, 86_400, 40 * 86_400, "bench")
            reader, now = Reader(redis), now_ms()
            started = time.perf_counter()
            populate(store, messages, now)
            load_s = time.perf_counter() - started
            failed_hour = reader.search(states=["failed", "undelivered"], since_ms=now - HOUR)
            day = a_day(reader, now)
            cursor = day.next_cursor
            for _ in range(19):  # the cursor of the 21st page of that day
                cursor = a_day(reader, now, cursor).next_cursor
            figures = {
                "messages": messages,
                "load_s": load_s,
                "failed_last_hour": timed(
                    lambda: reader.search(states=["failed", "undelivered"], since_ms=now - HOUR)
                ),
                "product_in_a_day": timed(lambda: a_day(reader, now)),
                "product_in_a_day_page_21": timed(lambda: a_day(reader, now, cursor)),
                "everything_newest": timed(lambda: reader.search()),
                "state_counts_24h": timed(lambda: reader.state_counts(now - DAY, now), runs=50),
                "page_sizes": [len(failed_hour.messages), len(day.messages)],
            }
            index = sum(
                redis.memory_usage(k) for k in redis.scan_iter(f"{keys.DEFAULT.prefix}:ix:*")
            )
            sample = [
                f"{i:08x}-4b5e-9f1a-{i:012x}" for i in range(0, messages, max(1, messages // 2000))
            ]
            callbacks = sum(len(reader.message("verihubs", m).history) for m in sample)
            history = [history_bytes(redis, keys.DEFAULT.message("verihubs", m)) for m in sample]
            figures["index_bytes_per_message"] = index / messages
            figures["history_bytes_per_callback"] = sum(history) / callbacks
            figures["history_bytes_per_message"] = statistics.mean(history)
            figures["redis_used_memory_mb"] = redis.info("memory")["used_memory"] / 2**20
            return figures
        finally:
            server.stop()


def report(figures: dict[str, object]) -> None:
    print(
        f"search with {figures['messages']:,} messages tracked (loaded in {figures['load_s']:.0f} s)"
    )
    for name in ("failed_last_hour", "product_in_a_day", "product_in_a_day_page_21",
                 "everything_newest", "state_counts_24h"):  # fmt: skip
        f = figures[name]
        print(
            f"  {name:<28} p50 {f['p50_ms']:6.2f} ms  p99 {f['p99_ms']:6.2f} ms  (target p99 <= 50)"
        )
    print(f"  index bytes per message       {figures['index_bytes_per_message']:.0f}")
    print(
        f"  history bytes per callback    {figures['history_bytes_per_callback']:.1f}"
        f" ({figures['history_bytes_per_message']:.0f} per message)"
    )


if __name__ == "__main__":
    report(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000))
