"""Tests run against a real, private redis-server that they start themselves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rq import Queue, SimpleWorker

from core.embedded import RedisServer
from core.read import Reader
from core.settings import Settings
from workers import jobs
from workers.store import Store

CALLBACK_TOKEN = "test-callback-token"
ADMIN_TOKEN = "test-admin-token"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), durable=False).start()
    yield server
    server.stop()


@pytest.fixture
def redis(redis_server: RedisServer) -> Iterator[Redis]:
    client = Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


def make_settings(redis_url: str, **overrides: str) -> Settings:
    env = {
        "REDIS_URL": redis_url,
        "CALLBACK_TOKEN": CALLBACK_TOKEN,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "REDIS_TIMEOUT": "0.5",
        **overrides,
    }
    return Settings.from_env(env)


@pytest.fixture
def settings(redis: Redis, redis_server: RedisServer) -> Settings:
    return make_settings(redis_server.url)


@pytest.fixture
def store(redis: Redis, settings: Settings) -> Store:
    store = Store(redis, settings.message_ttl, settings.failed_job_ttl)
    jobs.bind(store)
    return store


@pytest.fixture
def reader(redis: Redis) -> Reader:
    return Reader(redis)


def run_jobs(redis: Redis, settings: Settings) -> None:
    """Apply every queued batch in-process, as the production worker would."""
    queue = Queue(settings.queue_name, connection=redis)
    SimpleWorker([queue], connection=redis).work(burst=True, logging_level="WARNING")


def metric(client, name: str, **labels: str) -> float:
    """The sum of a family's samples matching the labels, as /metrics serves them."""
    total = 0.0
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total
