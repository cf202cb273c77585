"""`make bench`: receiver, worker and memory figures, each against a baseline in the same run,
then the sustained end-to-end figures of bench/e2e.py (BENCH_E2E_*; BENCH_E2E=0 leaves them
out, `python -m bench.e2e` runs them alone).

Prints a table and writes bench/results/latest.json. `python -m bench.run receiver [N]` runs
only the receiver figures, N times (default 3: the machine is shared and noisy), each run's
JSON and then the median ratio.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from redis import Redis
from rq import Queue, SimpleWorker

from bench import e2e
from core import keys, logs
from core.embedded import RedisServer, free_port
from core.events import Event
from core.queue import JobSerializer
from core.queue import queue as core_queue
from core.settings import Settings
from receiver.queue_writer import QueueWriter
from tools.stack import wait_until
from workers import jobs
from workers.main import BatchWorker
from workers.store import Store

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789abcdefghijkl"  # 32+ characters, as Settings requires
WRK = ["wrk", "-t2", "-c32", "-d10s", "--latency", "-s", str(ROOT / "bench" / "wrk.lua")]
UVICORN = [str(Path(sys.executable).parent / "uvicorn"), "--no-access-log", "--log-level",
           "warning", "--host", "127.0.0.1"]  # fmt: skip


def serve_and_load(app: list[str], env: dict[str, str]) -> dict[str, float]:
    """Requests/s and the latency percentiles that wrk --latency prints (p50, p99, in ms)."""
    port = free_port()
    server = subprocess.Popen([*UVICORN, "--port", str(port), *app], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_until(lambda: _up(port), what="server")
        url = f"http://127.0.0.1:{port}/callbacks/verihubs/whatsapp-otp/{TOKEN}"
        subprocess.run(["wrk", "-t1", "-c4", "-d2s", url], capture_output=True, check=True)
        out = subprocess.run([*WRK, url], capture_output=True, text=True, check=True).stdout
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if non2xx:
            raise RuntimeError(f"{app}: {non2xx.group(1)} failed responses\n{out}")
        return {
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": _percentile_ms(out, "50"),
            "p99_ms": _percentile_ms(out, "99"),
        }
    finally:
        server.terminate()
        server.wait()


WRK_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _percentile_ms(out: str, percent: str) -> float:
    value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M).groups()
    return float(value) * WRK_UNITS_MS[unit]


def _up(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def receiver(redis: Redis, env: dict[str, str]) -> dict[str, float]:
    redis.flushall()
    bare = serve_and_load(["--factory", "bench.apps:bare_app"], env)
    ours = serve_and_load(["--factory", "receiver.app:create_app"], env)
    jobs_written, callbacks = redis.llen("rq:queue:otp-callbacks"), _queued_callbacks(redis)
    naive = serve_and_load(["--factory", "bench.apps:enqueue_app"], env)
    figures = {
        "bare_rps": bare["rps"],
        "group_commit_rps": ours["rps"],
        "enqueue_per_request_rps": naive["rps"],
        "group_commit_ratio": ours["rps"] / bare["rps"],
        "enqueue_per_request_ratio": naive["rps"] / bare["rps"],
        "mean_batch_size": callbacks / max(jobs_written, 1),
    }
    for name, run in (("bare", bare), ("group_commit", ours), ("enqueue_per_request", naive)):
        figures[f"{name}_p50_ms"], figures[f"{name}_p99_ms"] = run["p50_ms"], run["p99_ms"]
    return figures


def _queued_callbacks(redis: Redis) -> int:
    queue = Queue("otp-callbacks", connection=redis, serializer=JobSerializer)
    return sum(len(job.args[0]) for job in queue.get_jobs())


def events(n: int, tag: str) -> list[Event]:
    now = time.time_ns() // 1_000_000
    return [Event("verihubs", "whatsapp-otp", f"{tag}-{i // 4}", i % 4, now, now) for i in range(n)]


def drain(worker_class: type[SimpleWorker], queue: Queue) -> float:
    started = time.perf_counter()
    worker = worker_class([queue], connection=queue.connection, serializer=queue.serializer)
    worker.work(burst=True, logging_level="ERROR")
    return time.perf_counter() - started


def worker(
    redis: Redis, settings: Settings, batch: int, callbacks: int = 60_000
) -> dict[str, float]:
    redis.flushall()
    queue = core_queue(redis, settings)
    single = events(3_000, "one")
    for e in single:
        queue.enqueue(jobs.apply_batch, [e.to_wire()], result_ttl=0)
    baseline = len(single) / drain(SimpleWorker, queue)
    redis.flushall()
    batched, writer = events(callbacks, "batch"), QueueWriter(redis, settings)
    for i in range(0, len(batched), batch):
        writer.write(batched[i : i + batch], Counter())
    redis.config_resetstat()
    ours = len(batched) / drain(BatchWorker, queue)
    # Redis's own time in scripts per callback (its one core is what saturates): the apply
    # script's, and RQ's for taking and finishing jobs (EVALSHA too; a job's worth of them
    # per callback at batch 1).
    script_us = redis.info("commandstats")["cmdstat_evalsha"]["usec"] / len(batched)
    return {"per_callback_jobs_per_s": baseline, "batched_per_s": ours, "batch_size": batch,
            "ratio": ours / baseline, "redis_scripts_us_per_callback": script_us}  # fmt: skip


def memory(
    redis: Redis, settings: Settings, batch: int, messages: int = 20_000
) -> dict[str, float]:
    """Redis bytes per callback request, through the production path: each message goes
    requested -> sent -> delivered -> read -> verified (5 callbacks), written by group commit's
    writer in jobs of `batch` callbacks (QueueWriter) and applied by the worker (BatchWorker,
    burst); then everything Redis holds for them (message hashes, billing records, counters,
    what RQ and the replay markers leave) divided by the callbacks."""
    now = time.time_ns() // 1_000_000
    callbacks = [
        Event("verihubs", "whatsapp-otp", _session(i), c, now + c * 900, now)
        for i in range(messages)
        for c in range(5)
    ]
    writer, queue = QueueWriter(redis, settings), core_queue(redis, settings)

    def apply(events: list[Event]) -> None:
        # A few hundred callbacks queued at a time, as a worker that keeps up sees them (a
        # queue holding every job at once would leave Redis's tables sized for it).
        for start in range(0, len(events), 512):
            for i in range(start, min(start + 512, len(events)), batch):
                writer.write(events[i : i + batch], Counter())
            drain(BatchWorker, queue)

    # Redis allocates ~1 MB once, on first use, that FLUSHALL keeps: not a request's cost.
    apply(callbacks[:50])
    redis.flushall()
    before = redis.info("memory")["used_memory"]
    apply(callbacks)
    used = redis.info("memory")["used_memory"] - before
    return {
        "batch_size": batch,
        "callbacks": len(callbacks),
        "bytes_per_callback": used / len(callbacks),
        "bytes_per_message": used / messages,
        "message_key_bytes": redis.memory_usage(keys.DEFAULT.message("verihubs", _session(0))),
        # Records share their generation's hashes (BILLING_RECORD_SHARDS of them): their
        # bytes, and the count of hashes beside them, per message.
        "billing_record_bytes": _bytes(redis, keys.DEFAULT.billing_records("*") + ":*") / messages,
        "index_bytes_per_message": _bytes(redis, keys.DEFAULT.index("*", "*", "*")) / messages,
        "replay_markers_left": sum(1 for _ in redis.scan_iter(keys.DEFAULT.applied("*"))),
    }


def _bytes(redis: Redis, pattern: str) -> int:
    """What the keys matching `pattern` hold (`MEMORY USAGE`)."""
    return sum(redis.memory_usage(k) for k in redis.scan_iter(pattern))


def _session(i: int) -> str:
    return f"{i:08x}-7c2e-4b5e-9f1a-{i:012x}"  # a UUID, as Verihubs sends


def receiver_only(repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp), durable=False).start()
        try:
            env = {**os.environ, "REDIS_URL": server.url, "CALLBACK_TOKEN": TOKEN,
                   "ADMIN_TOKEN": TOKEN, "MAX_BACKLOG": "10000000"}  # fmt: skip
            runs = [receiver(Redis.from_url(server.url), env) for _ in range(repeats)]
        finally:
            server.stop()
    for run in runs:
        print(json.dumps(run))
    ratios = sorted(run["group_commit_ratio"] for run in runs)
    print(f"median ratio of bare: {ratios[len(ratios) // 2]:.2f} (runs: {ratios})")


def main() -> None:
    logs.configure("error")
    if sys.argv[1:2] == ["receiver"]:
        receiver_only(int(sys.argv[2]) if len(sys.argv) > 2 else 3)
        return
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp), durable=False).start()
        try:
            env = {**os.environ, "REDIS_URL": server.url, "CALLBACK_TOKEN": TOKEN,
                   "ADMIN_TOKEN": TOKEN, "MAX_BACKLOG": "10000000"}  # fmt: skip
            settings = Settings.from_env(env)
            redis = Redis.from_url(server.url)
            store = Store.from_settings(redis, settings)
            jobs.bind(store)
            results = {
                "receiver": receiver(redis, env),
                "worker": worker(redis, settings, batch=16),
                "worker_batch_64": worker(redis, settings, batch=64),
                # One job per callback, as one serial provider client makes them.
                "worker_batch_1": worker(redis, settings, batch=1, callbacks=20_000),
                "memory": memory(redis, settings, batch=1),
                "memory_batch_16": memory(redis, settings, batch=16),
            }
        finally:
            server.stop()
    if os.environ.get("BENCH_E2E", "1") != "0":
        results["e2e"] = e2e.run(e2e.Config.from_env())
    report(results)


def report(results: dict[str, dict]) -> None:
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    r, w, w64 = (results[k] for k in ("receiver", "worker", "worker_batch_64"))
    w1 = results["worker_batch_1"]
    m1, m16 = results["memory"], results["memory_batch_16"]
    rows = [
        ("receiver: bare Starlette route (req/s)", f"{r['bare_rps']:,.0f}",
         f"ceiling; {_latency(r, 'bare')}"),
        ("receiver: ours, group commit (req/s)", f"{r['group_commit_rps']:,.0f}",
         f"{r['group_commit_ratio']:.2f} of bare (target >= 0.50); {_latency(r, 'group_commit')}"),
        ("receiver: one enqueue per request (req/s)", f"{r['enqueue_per_request_rps']:,.0f}",
         f"{r['enqueue_per_request_ratio']:.2f} of bare; {_latency(r, 'enqueue_per_request')}"),
        ("receiver: mean callbacks per job", f"{r['mean_batch_size']:.1f}", ""),
        ("worker: SimpleWorker, job per callback (/s)", f"{w['per_callback_jobs_per_s']:,.0f}",
         "baseline"),
        ("worker: ours, batches of 16 (/s)", f"{w['batched_per_s']:,.0f}",
         f"{w['ratio']:.1f}x (target >= 10,000/s); {_script(w)}"),
        ("worker: ours, batches of 64 (/s)", f"{w64['batched_per_s']:,.0f}",
         f"{w64['ratio']:.1f}x; {_script(w64)}"),
        ("worker: ours, one job per callback (/s)", f"{w1['batched_per_s']:,.0f}",
         f"{w1['ratio']:.1f}x (target >= 3,000/s); {_script(w1)}"),
        ("redis bytes per callback, jobs of 1", f"{m1['bytes_per_callback']:.0f}",
         f"{m1['bytes_per_message']:.0f} per tracked message of 5 (target <= 300),"
         f" {m1['replay_markers_left']} replay markers left"),
        ("redis bytes per callback, jobs of 16", f"{m16['bytes_per_callback']:.0f}",
         f"{m16['bytes_per_message']:.0f} per tracked message (message hash alone:"
         f" {m16['message_key_bytes']} B, billing record: {m16['billing_record_bytes']:.0f} B,"
         f" search index: {m16['index_bytes_per_message']:.0f} B)"),
    ]  # fmt: skip
    if "e2e" in results:
        rows += e2e.rows(results["e2e"])
    width = max(len(row[0]) for row in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>10}  {note}")
    print(f"\nwritten to {out / 'latest.json'}")


def _script(w: dict[str, float]) -> str:
    return f"redis {w['redis_scripts_us_per_callback']:.0f} us/callback in scripts (apply, RQ's)"


def _latency(r: dict[str, float], name: str) -> str:
    return f"p50 {r[f'{name}_p50_ms']:.2f} ms, p99 {r[f'{name}_p99_ms']:.2f} ms"


if __name__ == "__main__":
    main()
