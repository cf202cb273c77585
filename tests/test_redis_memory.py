"""Redis's memory: an evicting Redis is refused, callbacks get 503 before Redis is full, and
Redis memory is exported. Each test has its own private redis-server (CONFIG SET below)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2 as httpx
import pytest
from prometheus_client import CollectorRegistry
from redis import Redis
from starlette.testclient import TestClient

from core import storage
from core.embedded import RedisServer
from receiver.app import create_app
from tests.samples import verihubs_params, verihubs_url
from tests.support import CALLBACK_TOKEN, QUEUE, live_receiver, make_settings, metric


@pytest.fixture
def own_redis(tmp_path) -> Iterator[tuple[RedisServer, Redis]]:
    server = RedisServer(tmp_path, durable=False).start()
    yield server, Redis.from_url(server.url)
    server.stop()


def client_of(server: RedisServer, **env: str) -> TestClient:
    return TestClient(create_app(make_settings(server.url, **env), CollectorRegistry()))


def test_an_evicting_redis_stops_start_up(own_redis):
    server, redis = own_redis
    redis.config_set("maxmemory-policy", "allkeys-lru")
    with pytest.raises(storage.EvictingRedis, match="allkeys-lru"), client_of(server):
        pass


def test_an_explicit_override_starts_on_an_evicting_redis_and_says_so(own_redis, capfd):
    server, redis = own_redis
    redis.config_set("maxmemory-policy", "volatile-lru")
    with live_receiver(
        server.url, ALLOW_EVICTING_REDIS="true", CALLBACK_TOKEN=CALLBACK_TOKEN
    ) as url:
        answer = httpx.get(url + verihubs_url(), params=verihubs_params("s-1", 1))
        assert answer.status_code == 200
    assert "redis may evict data" in capfd.readouterr().out


def test_a_policy_changed_to_evicting_after_start_up_refuses_callbacks(own_redis):
    server, redis = own_redis
    with client_of(server) as client:
        redis.config_set("maxmemory-policy", "allkeys-random")
        client.app.state.ctx.memory.refresh()
        answer = client.get(verihubs_url(), params=verihubs_params("s-1", 1))
        assert (answer.status_code, answer.headers["retry-after"]) == (503, "5")
        assert redis.llen(QUEUE) == 0
        assert metric(client, "otp_callbacks_rejected_total", reason="redis_evicts") == 1


def test_callbacks_get_503_before_redis_is_full_and_memory_is_exported(own_redis):
    server, redis = own_redis
    with client_of(server, REDIS_MEMORY_LIMIT="0.9") as client:
        used = redis.info("memory")["used_memory"]
        redis.config_set("maxmemory", str(used * 2))  # half used: not yet
        client.app.state.ctx.memory.refresh()
        assert client.get(verihubs_url(), params=verihubs_params("s-1", 1)).status_code == 200
        redis.config_set("maxmemory", str(int(used / 0.95)))  # 95% used: refuse
        client.app.state.ctx.memory.refresh()
        answer = client.get(verihubs_url(), params=verihubs_params("s-2", 1))
        assert answer.status_code == 503 and "nearly full" in answer.json()["error"]
        assert redis.llen(QUEUE) == 1  # only the first callback's job
        assert metric(client, "otp_redis_memory_max_bytes") == int(used / 0.95)
        assert metric(client, "otp_redis_memory_used_bytes") > 0
        # Redis refuses even the refusal's count now: it waits in memory for a later write.
        redis.config_set("maxmemory", "0")
        client.app.state.ctx.memory.refresh()
        assert client.get(verihubs_url(), params=verihubs_params("s-3", 1)).status_code == 200
        assert metric(client, "otp_callbacks_rejected_total", reason="redis_memory_full") == 1


def test_start_up_logs_whether_redis_persists(own_redis, tmp_path, capfd):
    server, _ = own_redis  # durable=False: no AOF, no RDB
    with live_receiver(server.url):
        pass
    assert "redis keeps nothing on disk" in capfd.readouterr().out
    durable = RedisServer(tmp_path / "aof", durable=True).start()
    try:
        with live_receiver(durable.url):
            pass
        out = capfd.readouterr().out
        assert '"aof":true' in out and "redis persistence" in out
    finally:
        durable.stop()
