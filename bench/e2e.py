"""End to end, sustained: `make run`'s process model under an open-loop load at a fixed rate.

Each point starts its own private Redis with AOF (`appendfsync always`, as the README asks of
production; never the shared 6379), N web processes (`python -m receiver.server`, one port
each: the server has one listener per process, the load generator spreads its connections
over the ports) and M workers (`python -m workers.main`), then drives `bench.loadgen` at a
rate for some seconds and measures:

- accepted: callbacks answered 200, and the achieved send and answer rates;
- ack latency p50/p99/max, from each request's due time (bench/loadgen.py);
- processing lag (receipt by the web to the start of its batch's application) from the
  Redis-held histogram `otp_processing_lag_seconds` (core/counters.py LAG, the difference of
  the counters hash across the point). Its buckets are coarse (0.5, 1, 2.5 s ...): the p99
  given is the upper bound of the bucket the 99th percentile falls in, so "<= 1 s" is exact;
- the backlog (queued callbacks, `otp:queued:<queue>`) sampled every 0.05 s, and the time
  from the last answer until every accepted callback is applied (the counters' received
  total reaches the 200 answers): the drain;
- nothing lost: the received counters gained exactly the 200 answers, no duplicates, and
  every message's stored set of statuses (its hash's bitmask) is exactly the callbacks
  answered 200 for it; the current state of a sample read back through core.read;
- CPU: Redis's (INFO cpu, all its threads), each web's and worker's (/proc), the load
  generator's own and the machine's, over the load; the hottest process is what saturates.

A point holds when every callback is answered 200 at the rate asked, ack p99 <= 50 ms, lag
p99 <= 1 s and the backlog drains within 2 s of the load's end, with nothing lost.

`python -m bench.e2e` runs the main point, the curve and the growth points and prints a
table (BENCH_E2E_* below; BENCH_QUICK=1 for a short run while developing); `make bench` runs
them too. Points are measured one after another on the same machine as everything else: on
2 cores the generator, the webs, the workers and Redis share them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from redis import Redis
from rq import Queue

from bench import loadgen
from core import counters, model, products
from core.clock import now_ms
from core.embedded import RedisServer
from core.keys import MessageField
from core.queue import queue
from core.read import Reader
from core.settings import Settings
from tools.stack import Stack
from workers.store import Store

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789abcdefghijkl"  # 32+ characters, as Settings requires
ACK_P99_MS, LAG_P99_S, DRAIN_S = 50.0, 1.0, 2.0
POLL = 0.05
STATE_SAMPLE = 200
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
WAIT = ":wait"  # a process's run-queue wait, beside its CPU


@dataclass(frozen=True)
class Point:
    webs: int
    workers: int
    rate: float
    seconds: float
    preload: int = 0  # messages already tracked before the load
    telnyx: float = 0.0  # fraction of the messages sent as signed Telnyx webhooks

    @property
    def label(self) -> str:
        tracked = f", {self.preload:,} tracked" if self.preload else ""
        return f"{self.webs} web x {self.workers} worker, {self.rate:,.0f}/s for {self.seconds:g} s{tracked}"


# CPU --------------------------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (/proc/<pid>/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def runqueue_wait(pid: int) -> float:
    """Seconds a live process spent runnable but waiting for a core (/proc/<pid>/schedstat):
    high while its CPU is low means the machine's cores, not the process, are the limit."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def machine_cpu() -> tuple[float, float]:
    """Busy and total CPU seconds of the whole machine, all cores (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values) - idle) / CLOCK_TICK, sum(values) / CLOCK_TICK


def redis_cpu(redis: Redis) -> float:
    info = redis.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


@dataclass
class CpuClock:
    pids: dict[str, int]
    redis: Redis
    redis_pid: int

    def read(self) -> dict[str, float]:
        seen = {name: process_cpu(pid) for name, pid in self.pids.items()}
        seen["redis"] = redis_cpu(self.redis)
        for name, pid in {**self.pids, "redis": self.redis_pid}.items():
            seen[f"{name}{WAIT}"] = runqueue_wait(pid)
        seen["machine"], seen["machine_total"] = machine_cpu()
        seen["wall"] = time.monotonic()
        return seen


def cpu_percent(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """Each process's CPU over the interval, in % of one core; `machine` in % of one core
    summed over all cores (200 is a saturated 2-core machine)."""
    wall = after["wall"] - before["wall"]
    cores = os.cpu_count() or 1
    out = {
        name: 100 * (after[name] - before[name]) / wall
        for name in after
        if name not in ("wall", "machine", "machine_total")
    }
    total = after["machine_total"] - before["machine_total"]
    out["machine"] = 100 * cores * (after["machine"] - before["machine"]) / max(total, 1e-9)
    return out


# Counters ---------------------------------------------------------------------------------


def family_total(values: Mapping[str, int], family: counters.Family) -> int:
    """Sum of a counter family's fields (not a histogram's)."""
    prefix = family.key + counters.SEP
    return sum(v for k, v in values.items() if k.startswith(prefix))


def lag_buckets(values: Mapping[str, int]) -> tuple[list[int], int]:
    """The lag histogram's bucket counts over every provider (bucket i: at most
    LAG_BUCKETS[i] s, the last one beyond them) and its sum in ms."""
    buckets, total_ms = [0] * (len(counters.LAG_BUCKETS) + 1), 0
    prefix = counters.LAG.key + counters.SEP
    for key, value in values.items():
        if not key.startswith(prefix):
            continue
        last = key.rsplit(counters.SEP, 1)[1]
        if last == "sum":
            total_ms += value
        elif last.startswith("b"):
            buckets[int(last[1:])] += value
    return buckets, total_ms


def bucket_quantile(buckets: list[int], q: float) -> float | None:
    """Upper bound (s) of the bucket holding the q-quantile; None past the last bound."""
    total, running = sum(buckets), 0
    for i, count in enumerate(buckets):
        running += count
        if total and running >= q * total:
            return counters.LAG_BUCKETS[i] if i < len(counters.LAG_BUCKETS) else None
    return 0.0


def delta(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


# Pre-population ---------------------------------------------------------------------------


def preload(redis: Redis, settings: Settings, messages: int) -> float:
    """`messages` messages already tracked, written by the apply script in big pipelined
    batches (bench/search.py's populate: several products, a week of receipt times)."""
    from bench.search import populate

    # A queue name of its own: populate's batches must not take callbacks off the real
    # queue's count of queued callbacks.
    store = Store(redis, settings.message_ttl, settings.failed_job_ttl,
                  settings.billing_horizon, "preload", settings.keys)  # fmt: skip
    started = time.perf_counter()
    # Setting up, not measured: no fsync per write while loading (AOF as before after it).
    fsync = redis.config_get("appendfsync")["appendfsync"]
    redis.config_set("appendfsync", "no")
    try:
        populate(store, messages, now_ms())
    finally:
        redis.config_set("appendfsync", fsync)
    return time.perf_counter() - started


# Checking what was stored -----------------------------------------------------------------


def check_messages(
    redis: Redis, settings: Settings, run: int, masks: bytes, telnyx: float
) -> dict[str, int]:
    """Every message's stored set of statuses against the callbacks answered 200 for it."""
    keys, wrong, missing, checked = settings.keys, 0, 0, 0
    field = MessageField.SEEN.value
    for start in range(0, len(masks), 10_000):
        chunk = [i for i in range(start, min(start + 10_000, len(masks))) if masks[i]]
        pipe = redis.pipeline(transaction=False)
        wants = []
        for i in chunk:
            provider, product, mid, codes = loadgen.expected(run, i, telnyx)
            wants.append(_bits(provider, product, codes, masks[i]))
            pipe.hget(keys.message(provider, mid), field)
        for want, got in zip(wants, pipe.execute(), strict=True):
            checked += 1
            if got is None:
                missing += 1
            elif int(got) != want:
                wrong += 1
    reader, bad_state = Reader(redis, keys), 0
    step = max(1, len(masks) // STATE_SAMPLE)
    for i in range(0, len(masks), step):
        if not masks[i]:
            continue
        provider, product, mid, codes = loadgen.expected(run, i, telnyx)
        view = reader.message(provider, mid)
        if view is None or view.state != _state(provider, product, codes, masks[i]):
            bad_state += 1
    return {"messages_checked": checked, "messages_missing": missing,
            "messages_wrong_statuses": wrong, "messages_wrong_state": bad_state}  # fmt: skip


def _accepted_codes(codes: tuple[int, ...], mask: int) -> list[int]:
    return [c for j, c in enumerate(codes) if mask & (1 << j)]


def _bits(provider: str, product: str, codes: tuple[int, ...], mask: int) -> int:
    return sum(1 << products.status_bit(provider, product, c) for c in _accepted_codes(codes, mask))


def _state(provider: str, product: str, codes: tuple[int, ...], mask: int) -> str:
    prod = products.product(provider, product)
    assert prod is not None
    seen = [s for c in _accepted_codes(codes, mask) if (s := prod.status(c)) is not None]
    state = model.current_state(seen)
    return state.value if state else ""


# One point --------------------------------------------------------------------------------


def run_point(
    point: Point,
    connections: int = 64,
    drain_timeout: float = 30.0,
    log_level: str = "info",
    warmup: float = 0.0,
) -> dict[str, object]:
    """Starts Redis and the processes, warms them up for `warmup` seconds (not measured),
    runs the load, waits for the drain, checks, stops."""
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp_name:
        tmp = Path(tmp_name)
        server = RedisServer(tmp / "redis", durable=True).start()
        try:
            return _run_point(point, server, tmp, connections, drain_timeout, log_level, warmup)
        finally:
            server.stop()


def _run_point(
    point: Point,
    server: RedisServer,
    tmp: Path,
    connections: int,
    drain_timeout: float,
    log_level: str,
    warmup: float,
) -> dict[str, object]:
    env = {"CALLBACK_TOKEN": TOKEN, "ADMIN_TOKEN": TOKEN, "LOG_LEVEL": log_level,
           "TELNYX_PUBLIC_KEY": loadgen.TELNYX_PUBLIC_KEY}  # fmt: skip
    settings = Settings.from_env({**env, "REDIS_URL": server.url})
    redis = Redis.from_url(server.url)
    figures: dict[str, object] = {"point": asdict(point)}
    used = redis.info("memory")["used_memory"]
    if point.preload:
        figures["preload_s"] = preload(redis, settings, point.preload)
        # Memory linear in what is tracked: the same bytes a message at 10,000 and 1,000,000.
        empty, used = used, redis.info("memory")["used_memory"]
        figures["preload_bytes_per_message"] = (used - empty) / point.preload
    figures["redis_used_memory_mb_before"] = used / 2**20
    stacks = []
    for i in range(point.webs):
        (tmp / f"web{i}").mkdir()
        stacks.append(Stack(server.url, tmp / f"web{i}", **env))
    try:
        for stack in stacks:
            stack.start_web()
        for _ in range(point.workers):
            stacks[0].start_worker()
        pids = {f"web{i}": s.web.pid for i, s in enumerate(stacks) if s.web is not None}
        pids |= {f"worker{i}": w.pid for i, w in enumerate(stacks[0].workers)}
        assert server.process is not None
        urls = [s.url for s in stacks]
        if warmup > 0:
            _warm_up(urls, point, warmup, connections, queue(redis, settings), drain_timeout)
        figures |= _load(point, redis, settings, urls, pids,
                         server.process.pid, tmp, connections, drain_timeout)  # fmt: skip
    finally:
        for stack in stacks:
            stack.stop()
    return figures


def _warm_up(
    urls: list[str], point: Point, seconds: float, connections: int, jobs: Queue, drain: float
) -> None:
    """Processes just started answer their first requests slowly (connections to open,
    pools to fill, the script to load), which a short point's p99 would count: the same load
    for a few seconds first, its messages of their own, drained before the measured run."""
    args = _loadgen(urls, point, seconds, connections)
    subprocess.run(args, cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
    deadline = time.time() + drain
    while pending(jobs) and time.time() < deadline:
        time.sleep(POLL)


def _loadgen(urls: list[str], point: Point, seconds: float, connections: int) -> list[str]:
    """bench.loadgen's command line: the point's rate and mix against every web, `seconds`."""
    args = [sys.executable, "-m", "bench.loadgen", "--token", TOKEN, "--rate", str(point.rate),
            "--seconds", str(seconds), "--connections", str(connections),
            "--telnyx", str(point.telnyx)]  # fmt: skip
    for url in urls:
        args += ["--url", url]
    return args


def _load(
    point: Point,
    redis: Redis,
    settings: Settings,
    urls: list[str],
    pids: dict[str, int],
    redis_pid: int,
    tmp: Path,
    connections: int,
    drain_timeout: float,
) -> dict[str, object]:
    reader, clock = Reader(redis, settings.keys), CpuClock(pids, redis, redis_pid)
    queued_key = settings.keys.queued_events(settings.queue_name)
    jobs = queue(redis, settings)
    run_tag = int.from_bytes(os.urandom(4), "big")
    result_path, masks_path = tmp / "loadgen.json", tmp / "masks"
    args = [*_loadgen(urls, point, point.seconds, connections), "--run", f"{run_tag:x}",
            "--json", str(result_path), "--masks", str(masks_path)]  # fmt: skip
    before, cpu0 = reader.counters(), clock.read()
    received0 = family_total(before, counters.RECEIVED)

    def sample() -> tuple[float, int, int]:
        """(time, queued callbacks, callbacks applied since the start)."""
        queued = int(redis.get(queued_key) or 0)
        applied = family_total(reader.counters(), counters.RECEIVED) - received0
        return time.time(), queued, applied

    generator = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL)
    samples = []
    while generator.poll() is None:
        samples.append(sample())
        time.sleep(POLL)
    cpu1 = clock.read()
    if generator.returncode != 0:
        raise RuntimeError(f"bench.loadgen failed ({generator.returncode})")
    load = loadgen.Result(**json.loads(result_path.read_text()))
    accepted = load.accepted
    # The drain: until the received counters reach the 200 answers. The last callbacks may
    # be applied before the generator has read their answers (or exited): the first sample
    # that saw them all, from the last answer on, dates the drain.
    deadline, idle_since = time.time() + drain_timeout, None
    samples.append(sample())
    while samples[-1][2] < accepted and time.time() < deadline:
        # Nothing queued, taken or being applied for a second: what is missing is lost.
        if pending(jobs):
            idle_since = None
        elif (idle_since := idle_since or time.time()) < time.time() - 1:
            break
        time.sleep(0.02)
        samples.append(sample())
    applied = samples[-1][2]
    drained = applied >= accepted
    still_pending = pending(jobs)
    done_at = next((t for t, _, a in samples if a >= accepted), None)
    drain_s = max(0.0, done_at - load.ended_at) if done_at is not None else None
    backlog = [q for t, q, _ in samples if t <= load.ended_at]
    cpu2 = clock.read()
    gained = delta(reader.counters(), before)
    buckets, lag_sum_ms = lag_buckets(gained)
    lag_count = sum(buckets)
    within_1s = sum(
        b for b, bound in zip(buckets, counters.LAG_BUCKETS, strict=False) if bound <= 1
    )
    every = cpu_percent(cpu0, cpu1)
    load_cpu = {k: v for k, v in every.items() if not k.endswith(WAIT)}
    load_cpu["loadgen"] = 100 * load.generator_cpu_s / (cpu1["wall"] - cpu0["wall"])
    waits = {k.removesuffix(WAIT): v for k, v in every.items() if k.endswith(WAIT)}
    # The generator is not the system under test: the hottest of ours saturates.
    processes = {k: v for k, v in load_cpu.items() if k not in ("machine", "loadgen")}
    hottest = max(processes, key=processes.__getitem__)
    cores = os.cpu_count() or 1
    # With every core busy (ours or anyone's) no process can take more: the machine is the
    # limit, whichever process is hottest.
    if load.send_rate < 0.98 * point.rate or load_cpu["loadgen"] >= 90:
        # The generator could not keep the rate: the point says nothing of the system.
        saturation = (
            f"the load generator (sent {load.send_rate:,.0f}/s, {load_cpu['loadgen']:.0f}% cpu)"
        )
    elif load_cpu["machine"] >= 90 * cores:
        saturation = f"machine ({load_cpu['machine']:.0f}% of {100 * cores}% cpu)"
    elif processes[hottest] >= 90:
        saturation = f"{hottest} ({processes[hottest]:.0f}% cpu)"
    else:
        # Nothing computes flat out: the time goes in waiting (round trips, fsync, locks).
        saturation = (
            f"no process at 100% cpu (hottest {hottest} {processes[hottest]:.0f}%,"
            f" machine {load_cpu['machine']:.0f}% of {100 * cores}%)"
        )
    spent = {k: cpu2[k] - cpu0[k] for k in (*pids, "redis")}
    figures: dict[str, object] = {
        "loadgen": asdict(load),
        "accepted": accepted,
        # Over the load's length, or longer when the answers took longer to come.
        "accepted_per_s": accepted / max(point.seconds, load.elapsed_s),
        "ack_p50_ms": load.latency_ms.get("p50", 0.0),
        "ack_p99_ms": load.latency_ms.get("p99", 0.0),
        "ack_max_ms": load.latency_ms.get("max", 0.0),
        "lag_p50_s": bucket_quantile(buckets, 0.50),
        "lag_p99_s": bucket_quantile(buckets, 0.99),
        "lag_mean_s": lag_sum_ms / max(lag_count, 1) / 1000,
        "lag_within_1s": within_1s / max(lag_count, 1),
        "lag_buckets": dict(zip([*map(str, counters.LAG_BUCKETS), "inf"], buckets, strict=True)),
        "backlog_max": max(backlog, default=0),
        "backlog_at_end": backlog[-1] if backlog else 0,
        "drained": drained,
        "drain_s": drain_s,
        "applied": applied,
        "duplicates": family_total(gained, counters.DUPLICATE),
        # Unknown while callbacks are still queued when the drain timeout ends.
        "lost": None if still_pending else max(0, accepted - applied),
        # Applied but not answered 200 (a timeout or a broken connection after the write).
        "applied_unanswered": max(0, applied - accepted),
        "cpu_percent": load_cpu,
        "runqueue_wait_percent": waits,
        "hottest": hottest,
        "saturation": saturation,
        "cpu_us_per_callback": {k: 1e6 * v / max(applied, 1) for k, v in spent.items()},
        "redis_used_memory_mb": redis.info("memory")["used_memory"] / 2**20,
    }
    if not still_pending:
        masks = masks_path.read_bytes()
        figures |= check_messages(redis, settings, run_tag, masks, point.telnyx)
    figures["holds"] = holds(figures, point)
    return figures


def pending(jobs: Queue) -> bool:
    """Batches queued or taken by a worker and not finished."""
    return bool(jobs.count or jobs.started_job_registry.count)


def holds(f: Mapping[str, object], point: Point) -> bool:
    load = f["loadgen"]
    assert isinstance(load, dict)
    return bool(
        f["drained"]
        and f["accepted"] == load["scheduled"] == int(point.rate * point.seconds)
        and load["send_rate"] >= 0.98 * point.rate
        and _at_most(f["ack_p99_ms"], ACK_P99_MS)
        and _at_most(f["lag_p99_s"], LAG_P99_S)
        and _at_most(f["drain_s"], DRAIN_S)
        and f["lost"] == 0
        and f["duplicates"] == 0
        and f.get("messages_missing") == 0
        and f.get("messages_wrong_statuses") == 0
        and f.get("messages_wrong_state") == 0
    )


def _at_most(value: object, bound: float) -> bool:
    return isinstance(value, int | float) and value <= bound


def _lost(f: Mapping[str, object]) -> str:
    return "unknown (still queued)" if f["lost"] is None else f"{f['lost']}"


def _seconds(value: object) -> str:
    return f"{value:g} s" if isinstance(value, int | float) else "over 300 s"


# The whole run: main point, curve, growth -------------------------------------------------


@dataclass(frozen=True)
class Config:
    """BENCH_E2E_* from the environment; BENCH_QUICK=1 shortens everything."""

    rate: float
    seconds: float
    webs: int
    workers: int
    curve: tuple[tuple[int, int], ...]
    rates: tuple[float, ...]
    curve_seconds: float
    growth: tuple[int, ...]
    growth_seconds: float
    growth_rate: float
    connections: int
    drain_timeout: float
    telnyx: float
    log_level: str
    warmup: float = 0.0
    parts: tuple[str, ...] = ("main", "curve", "growth")

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        quick = env.get("BENCH_QUICK", "") not in ("", "0")

        def get(name: str, default: str, quick_default: str | None = None) -> str:
            return env.get(name) or (quick_default if quick and quick_default else default)

        rate = float(get("BENCH_E2E_RATE", "2000"))
        return cls(
            rate=rate,
            seconds=float(get("BENCH_E2E_SECONDS", "300", "5")),
            webs=int(get("BENCH_E2E_WEBS", "1")),
            workers=int(get("BENCH_E2E_WORKERS", "1")),
            curve=tuple(_pair(c) for c in get("BENCH_E2E_CURVE", "1x1,1x2,2x1,2x2").split(",")),
            rates=_floats(
                get(
                    "BENCH_E2E_RATES",
                    "250,1000,2000,3000,4000,5000,6000,7000,8000,10000",
                    "200,500",
                )
            ),
            curve_seconds=float(get("BENCH_E2E_CURVE_SECONDS", "20", "3")),
            growth=tuple(
                int(n) for n in _floats(get("BENCH_E2E_GROWTH", "10000,1000000", "10000"))
            ),
            growth_seconds=float(get("BENCH_E2E_GROWTH_SECONDS", "60", "3")),
            growth_rate=float(get("BENCH_E2E_GROWTH_RATE", str(rate))),
            connections=int(get("BENCH_E2E_CONNECTIONS", "64")),
            drain_timeout=float(get("BENCH_E2E_DRAIN_TIMEOUT", "30", "10")),
            telnyx=float(get("BENCH_E2E_TELNYX", "0.1")),
            log_level=get("BENCH_E2E_LOG_LEVEL", "info"),
            warmup=float(get("BENCH_E2E_WARMUP", "3", "1")),
            parts=tuple(get("BENCH_E2E_PARTS", "main,curve,growth").split(",")),
        )


def _pair(text: str) -> tuple[int, int]:
    webs, workers = text.split("x")
    return int(webs), int(workers)


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def run(config: Config, say: bool = True) -> dict[str, object]:
    def point(p: Point) -> dict[str, object]:
        figures = run_point(
            p, config.connections, config.drain_timeout, config.log_level, config.warmup
        )
        if say:
            print(f"  {line(figures)}", file=sys.stderr, flush=True)
        return figures

    results: dict[str, object] = {"config": asdict(config)}
    if "main" in config.parts:
        results["main"] = point(
            Point(config.webs, config.workers, config.rate, config.seconds, 0, config.telnyx)
        )
    curve: list[dict[str, object]] = []
    for webs, workers in config.curve if "curve" in config.parts else ():
        for rate in config.rates:
            at = Point(webs, workers, rate, config.curve_seconds, 0, config.telnyx)
            figures = point(at)
            if not figures["holds"]:
                # A short point can fail on one passing stall of the machine: a rate fails
                # when it fails twice in a row (the first attempt is kept in the results).
                figures = point(at) | {"first_attempt": line(figures)}
            curve.append(figures)
            if not figures["holds"]:
                break  # higher rates fail too: the next configuration
    growth = []
    for tracked in config.growth if "growth" in config.parts else ():
        rate, seconds = config.growth_rate, config.growth_seconds
        growth.append(
            point(Point(config.webs, config.workers, rate, seconds, tracked, config.telnyx))
        )
    return results | {"curve": curve, "highest": highest(curve), "growth": growth}


def highest(curve: Iterable[Mapping[str, object]]) -> dict[str, dict[str, object]]:
    """Per configuration, the highest rate that held and, at the first rate that did not,
    the hottest process (what saturated)."""
    out: dict[str, dict[str, object]] = {}
    for f in curve:
        p = f["point"]
        assert isinstance(p, dict)
        entry = out.setdefault(f"{p['webs']}x{p['workers']}", {"holds_at": 0.0})
        if f["holds"]:
            entry["holds_at"] = max(entry["holds_at"], p["rate"])  # type: ignore[type-var]
        elif "fails_at" not in entry:
            cpu = f["cpu_percent"]
            assert isinstance(cpu, dict)
            entry |= {"fails_at": p["rate"], "hottest": f["hottest"],
                      "hottest_cpu": cpu[f["hottest"]], "saturation": f["saturation"]}  # fmt: skip
    return out


def line(f: Mapping[str, object]) -> str:
    """One point in one line."""
    p, cpu = f["point"], f["cpu_percent"]
    assert isinstance(p, dict) and isinstance(cpu, dict)
    drained = f"drained in {f['drain_s']:.1f} s" if f["drained"] else "NOT drained"
    waits = f["runqueue_wait_percent"]
    assert isinstance(waits, dict)
    processes = " ".join(
        f"{k} {v:.0f}%" + (f" (waited {waits[k]:.0f}%)" if k in waits else "")
        for k, v in cpu.items()
    )
    return (
        f"{Point(**p).label}: {'HOLDS' if f['holds'] else 'fails'};"
        f" accepted {f['accepted_per_s']:,.0f}/s, ack p99 {f['ack_p99_ms']:.1f} ms,"
        f" lag p99 <= {_seconds(f['lag_p99_s'])}, backlog max {f['backlog_max']:,}, {drained},"
        f" lost {_lost(f)}; cpu: {processes}"
    )


def rows(e2e: Mapping[str, object]) -> list[tuple[str, str, str]]:
    """Rows for bench.run's table."""
    out = []
    main = e2e.get("main")
    if isinstance(main, dict):
        out.append(_row("e2e", main, "(target 2,000/s)"))
    highest_rates = e2e["highest"]
    assert isinstance(highest_rates, dict)
    for name, h in highest_rates.items():
        webs, workers = name.split("x")
        fails = (
            f"fails at {h['fails_at']:,.0f}/s, saturated: {h['saturation']}"
            if "fails_at" in h
            else "held at every rate tried"
        )
        held = f"{h['holds_at']:,.0f}" if h["holds_at"] else f"< {h['fails_at']:,.0f}"
        out.append((f"e2e curve: {webs} web x {workers} worker, holds (/s)",
                    held, fails))  # fmt: skip
    growth = e2e["growth"]
    assert isinstance(growth, list)
    for g in growth:
        name, value, note = _row(f"e2e, {g['point']['preload']:,} tracked", g, "")
        per = g.get("preload_bytes_per_message")
        if per is not None:
            note += f"; redis {per:.0f} B per tracked message (2-4 callbacks each)"
        out.append((name, value, note))
    loaded = [(g["point"]["preload"], g["preload_bytes_per_message"] * g["point"]["preload"])
              for g in growth if "preload_bytes_per_message" in g]  # fmt: skip
    if len(loaded) >= 2:
        # What one more message costs, without what Redis holds whatever the count (counters,
        # billing buckets, the hash tables' first slots).
        (n0, b0), (n1, b1) = min(loaded), max(loaded)
        out.append((f"e2e growth: redis bytes per message, {n0:,} -> {n1:,} tracked",
                    f"{(b1 - b0) / (n1 - n0):,.0f}", "marginal (2-4 callbacks each)"))  # fmt: skip
    return out


def _row(name: str, f: Mapping[str, object], target: str) -> tuple[str, str, str]:
    p, cpu, us = f["point"], f["cpu_percent"], f["cpu_us_per_callback"]
    assert isinstance(p, dict) and isinstance(cpu, dict) and isinstance(us, dict)
    drained = f"drained {f['drain_s']:.1f} s" if f["drained"] else "not drained"
    return (
        f"{name}: {p['webs']}x{p['workers']} at {p['rate']:,.0f}/s, {p['seconds']:g} s (/s)",
        f"{f['accepted_per_s']:,.0f}",
        f"{'holds' if f['holds'] else 'FAILS'}{' ' + target if target else ''}: ack p99 {f['ack_p99_ms']:.0f} ms,"
        f" lag p99 <= {_seconds(f['lag_p99_s'])}, {drained}, lost {_lost(f)},"
        f" redis {cpu['redis']:.0f}% cpu ({us['redis']:.0f} us/callback),"
        f" saturated: {f['saturation']}",
    )


def main() -> None:
    config = Config.from_env()
    results = run(config)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "e2e.json").write_text(json.dumps(results, indent=2) + "\n")
    table = rows(results)
    width = max((len(r[0]) for r in table), default=0)
    for name, value, note in table:
        print(f"{name:<{width}}  {value:>10}  {note}")
    print(f"\nwritten to {out / 'e2e.json'}")


if __name__ == "__main__":
    main()
