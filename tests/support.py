"""Helpers shared by the tests that are not fixtures (those are in conftest.py): the tokens and
settings of the test app, running queued jobs, reading /metrics, /messages and /billing, the
checks made on every refusal, and a live receiver process."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rq import SimpleWorker

from core import keys, products
from core.embedded import free_port
from core.model import Status
from core.queue import JobSerializer, queue
from core.settings import Settings
from dashboards import build
from receiver.errors import Rejected
from receiver.queue_writer import QueueWriter
from tools.stack import wait_until

ROOT = Path(__file__).resolve().parent.parent
RULES = Path(build.__file__).parent / "prometheus"  # Prometheus rules and their unit tests

# At least 32 characters, as Settings requires of every token.
CALLBACK_TOKEN = "test-callback-token-0123456789abcdef"
ADMIN_TOKEN = "test-admin-token-0123456789abcdefgh"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
QUEUE = "rq:queue:otp-callbacks"  # the Redis list of the default RQ queue


# Settings and the worker ------------------------------------------------------------------


def make_settings(redis_url: str, **overrides: str) -> Settings:
    env = {
        "REDIS_URL": redis_url,
        "CALLBACK_TOKEN": CALLBACK_TOKEN,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "REDIS_TIMEOUT": "0.5",
        # Tests read /metrics right after what they count, and fail admin requests at will:
        # no metrics cache, no throttling (tests/test_metrics_access.py and
        # tests/test_admin_guard.py turn them on).
        "METRICS_CACHE_SECONDS": "0",
        "AUTH_FAILURES_PER_MINUTE": "0",
        **overrides,
    }
    return Settings.from_env(env)


def run_jobs(redis: Redis, settings: Settings) -> None:
    """Apply every queued batch in-process, as the production worker would."""
    jobs = queue(redis, settings)
    worker = SimpleWorker([jobs], connection=redis, serializer=JobSerializer)
    worker.work(burst=True, logging_level="WARNING")


def apply_shuffled(redis: Redis, settings: Settings, events: list, rnd: random.Random) -> list:
    """The events and copies of half of them, shuffled, written as group commit writes them
    in random batches of 1 to 6 and applied through RQ; returns what was sent."""
    copies = events + rnd.sample(events, k=len(events) // 2)
    rnd.shuffle(copies)
    writer = QueueWriter(redis, settings)
    i = 0
    while i < len(copies):
        size = rnd.randint(1, 6)
        writer.write(copies[i : i + size], Counter())
        i += size
    run_jobs(redis, settings)
    return copies


def billing_records(redis: Redis, provider: str, message_id: str) -> list[tuple[str, str]]:
    """Every (hash, value) holding the message's billing record, found by looking in every
    generation's hashes (not by the script's rule for where it goes)."""
    pattern = keys.DEFAULT.billing_records(provider) + ":*:*"
    found = [(k.decode(), redis.hget(k, message_id)) for k in redis.scan_iter(pattern)]
    return [(k, v.decode()) for k, v in found if v is not None]


# Sans I/O: what an adapter makes of its input ---------------------------------------------


def status_of(event) -> Status | None:
    """The canonical status an event stands for, through its product's table."""
    product = products.product(event.provider, event.product)
    assert product is not None, (event.provider, event.product)
    return product.status(event.code)


def rejection(call: Callable, *args) -> Rejected:
    with pytest.raises(Rejected) as info:
        call(*args)
    return info.value


# Through the app: what it answers and what it then serves ---------------------------------


def metric(client, name: str, **labels: str) -> float:
    """The sum of a family's samples matching the labels, as /metrics (this process's) and
    /metrics/shared (Redis-held) serve them: no family is on both."""
    total = 0.0
    pages = "".join(client.get(path).text for path in ("/metrics", "/metrics/shared"))
    for family in text_string_to_metric_families(pages):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def message(client, provider: str, message_id: str) -> dict:
    response = client.get(f"/messages/{provider}/{message_id}", headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()


def billing(client) -> dict[tuple[str, str], int]:
    days = client.get("/billing", headers=ADMIN).json()["days"]
    return {(d["provider"], d["product"]): d["billable"] for d in days}


def assert_refused(response, redis: Redis, client, code: int, reason: str) -> None:
    """A refusal: its status, a JSON error alone, nothing queued, and counted once."""
    assert response.status_code == code, response.text
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"error"}
    assert redis.llen(QUEUE) == 0
    assert metric(client, "otp_callbacks_rejected_total", reason=reason) == 1


# The real process -------------------------------------------------------------------------


@contextmanager
def live_receiver(redis_url: str, **env: str) -> Iterator[str]:
    """The web process as the Procfile runs it (receiver.server), its stdout inherited:
    started from a test body, capfd captures the lines it logs."""
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "LOG_LEVEL": "info", **env}
    args = [sys.executable, "-m", "receiver.server", "--port", str(port)]
    process = subprocess.Popen(args, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url + "/healthz"), what="receiver start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
