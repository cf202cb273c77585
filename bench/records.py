"""What keeping billing records by generation costs Redis per callback: new messages (5
callbacks each, in batches of 16, pipelined as the worker does) with only the current
generation holding records, against the steady state where every generation within the
horizon does (a new message is looked up in each). Redis's time in the apply script
(`INFO commandstats`), median of 3 runs each.

`python -m bench.records [MESSAGES]` (4,000 by default).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path
from unittest import mock

from redis import Redis

from core import keys, logs
from core.clock import now_ms
from core.embedded import RedisServer
from core.events import Event
from workers.store import Store

OLDER_RECORDS = 20_000  # per older generation
DAY = 86_400


def _apply(store: Store, events: list[Event], batch: int, at: int) -> None:
    batches = [(f"{at}-{i}", events[i : i + batch]) for i in range(0, len(events), batch)]
    # The worker's clock picks the generation a record is written in.
    with mock.patch("workers.store.now_ms", return_value=at):
        for start in range(0, len(batches), 64):  # as BatchWorker takes queued jobs
            store.apply_many(batches[start : start + 64])


def script_us_per_callback(older_generations: int, messages: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp), durable=False).start()
        try:
            redis = Redis.from_url(server.url)
            store = Store(redis, 7 * DAY, 3600, 35 * DAY, "bench")
            generation = keys.RECORD_GENERATION_MS
            now = (now_ms() // generation) * generation + generation // 2
            for back in range(older_generations, 0, -1):
                at = now - back * generation
                old = [Event("verihubs", "whatsapp-otp", f"old{back}-{i}", 1, at, at)
                       for i in range(OLDER_RECORDS)]  # fmt: skip
                _apply(store, old, 64, at)
            redis.config_resetstat()
            new = [Event("verihubs", "whatsapp-otp", f"{i:08x}-7c2e-4b5e-9f1a-{i:012x}", code,
                         now + code, now)
                   for i in range(messages) for code in range(5)]  # fmt: skip
            _apply(store, new, 16, now)
            stats = redis.info("commandstats").get("cmdstat_evalsha", {})
            return stats.get("usec", 0) / len(new)
        finally:
            server.stop()


def main() -> None:
    logs.configure("error")
    messages = int(sys.argv[1]) if len(sys.argv) > 1 else 4_000
    live = 35 * DAY * 1000 // keys.RECORD_GENERATION_MS  # older generations within the horizon
    for older in (0, live):
        runs = [script_us_per_callback(older, messages) for _ in range(3)]
        print(f"{older + 1} generation(s) holding records: {statistics.median(runs):.1f} us"
              f" per callback in apply.lua (runs: {', '.join(f'{r:.1f}' for r in runs)})")  # fmt: skip


if __name__ == "__main__":
    main()
