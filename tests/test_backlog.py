"""The backlog bound counts queued callbacks (events), not jobs: the writer adds a job's events
in its transaction, the apply script takes them off once per batch."""

from __future__ import annotations

import asyncio
import json
import time

from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from core import keys
from core.events import Event
from receiver import batcher
from receiver.app import create_app
from receiver.batcher import GroupCommit
from receiver.queue_writer import QueueWriter
from tests.samples import (
    JSON,
    META_APP_SECRET,
    meta_headers,
    meta_notification,
    meta_status,
    verihubs_params,
    verihubs_url,
)
from tests.support import QUEUE, make_settings, metric, run_jobs

QUEUED = keys.DEFAULT.queued_events("otp-callbacks")


def queued(redis) -> int:
    return int(redis.get(QUEUED) or 0)


def meta_post(client: TestClient, statuses: int, tag: str):
    at = int(time.time())
    notification = meta_notification(
        [meta_status(f"wamid.{tag}{i}", "sent", at) for i in range(statuses)]
    )
    raw = json.dumps(notification).encode()
    return client.post("/callbacks/meta", content=raw, headers={**JSON, **meta_headers(raw)})


def test_a_request_beyond_the_event_bound_gets_503_while_few_jobs_wait(
    redis, redis_server, store, monkeypatch
):
    settings = make_settings(redis_server.url, MAX_BACKLOG="100", META_APP_SECRET=META_APP_SECRET)
    with TestClient(create_app(settings, CollectorRegistry())) as client:
        # One Meta POST of 150 statuses: one job, 150 queued callbacks.
        assert meta_post(client, 150, "a").json() == {"status": "accepted", "events": 150}
        assert (redis.llen(QUEUE), queued(redis)) == (1, 150)
        refused = client.get(verihubs_url(), params=verihubs_params("late-1", 1))
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        assert meta_post(client, 1, "b").status_code == 503
        assert (redis.llen(QUEUE), queued(redis)) == (1, 150)  # nothing more stored
        assert metric(client, "otp_callbacks_rejected_total", reason="backlog_full") == 2
        assert metric(client, "otp_queue_events", queue="otp-callbacks") == 150
        assert metric(client, "otp_queue_depth", queue="otp-callbacks") == 1

        run_jobs(redis, settings)
        assert (redis.llen(QUEUE), queued(redis)) == (0, 0)
        assert metric(client, "otp_queue_events", queue="otp-callbacks") == 0
        # The next write measures the drained backlog (at most one a second while full).
        monkeypatch.setattr(batcher, "BACKLOG_PROBE_SECONDS", 0.0)
        assert client.get(verihubs_url(), params=verihubs_params("late-1", 1)).status_code == 200
        assert client.get(verihubs_url(), params=verihubs_params("late-2", 1)).status_code == 200
        assert queued(redis) == 2


def test_queued_events_follow_jobs_in_and_out_exactly(redis, settings, store):
    def events(tag: str, n: int) -> list[Event]:
        return [Event("meta", "whatsapp", f"{tag}-{i}", 1, 0, 0) for i in range(n)]

    async def burst() -> GroupCommit:
        group = GroupCommit(QueueWriter(redis, settings), max_batch=10, max_backlog=10_000)
        requests = [events("big", 25), *(events(f"s{i}", 3) for i in range(7))]
        await asyncio.gather(*(group.submit(r) for r in requests))
        return group

    group = asyncio.run(burst())
    assert queued(redis) == 25 + 7 * 3 == group.backlog
    assert redis.llen(QUEUE) < 8  # fewer jobs than requests: the bound is not in jobs
    run_jobs(redis, settings)
    assert queued(redis) == 0
    # A batch applied again (a retry, a replay of a failed job) takes nothing off twice.
    again = events("big", 25)
    QueueWriter(redis, settings).write(again, {})
    job_id = redis.lindex(QUEUE, 0).decode()
    run_jobs(redis, settings)
    store.apply(job_id, again)
    assert queued(redis) == 0
