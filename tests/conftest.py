"""Fixtures. Tests run against a real, private redis-server that they start themselves.

Only fixtures live here; helpers are in support.py, provider samples in samples.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from prometheus_client import CollectorRegistry
from redis import Redis
from starlette.testclient import TestClient

from core.embedded import RedisServer
from core.read import Reader
from core.settings import Settings
from receiver.app import create_app
from tests import batches
from tests.support import make_settings
from workers import jobs
from workers.store import Store


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


@pytest.fixture
def settings(redis: Redis, redis_server: RedisServer) -> Settings:
    return make_settings(redis_server.url)


@pytest.fixture
def store(redis: Redis, settings: Settings) -> Store:
    store = Store.from_settings(redis, settings)
    jobs.bind(store)
    return store


@pytest.fixture
def reader(redis: Redis) -> Reader:
    return Reader(redis)


@pytest.fixture
def app_client(redis_server, store):
    """Builds clients of the real app, each with its own settings (and client address)."""
    with ExitStack() as stack:

        def make(client: tuple[str, int] | None = None, **env: str) -> TestClient:
            settings = make_settings(redis_server.url, **env)
            extra = {"client": client} if client else {}
            app = create_app(settings, CollectorRegistry())
            return stack.enter_context(TestClient(app, **extra))

        yield make


@pytest.fixture
def failing(redis, redis_server):
    """Settings for batches the worker fails for real (tests/batches.py): no retries."""
    yield make_settings(redis_server.url, JOB_RETRIES="0")
    redis.acl_deluser(batches.APPLIER)  # the server outlives the test; FLUSHALL keeps users
