"""Batches the real worker fails for real (a Redis ACL refusal), for the failed-batch tests
of core.failed, the CLI and the console."""

from __future__ import annotations

from collections import Counter

from redis import Redis

from core.events import Event
from core.queue import JobSerializer, queue
from core.settings import Settings
from receiver.queue_writer import QueueWriter
from tests.support import make_settings
from workers import jobs
from workers.main import BatchWorker, store_for

AT = 1_795_000_000_000


def event(message_id: str, code: int = 2) -> Event:
    return Event("verihubs", "whatsapp-otp", message_id, code, AT, AT)


def work(redis: Redis, settings: Settings) -> None:
    """The production worker, in this process, until the queue is empty."""
    jobs.bind(store_for(settings))
    worker = BatchWorker(
        [queue(redis, settings)], connection=redis, serializer=JobSerializer, default_result_ttl=0
    )
    worker.keys = settings.keys
    worker.work(burst=True, logging_level="WARNING")


APPLIER = "applier"


def fail_batch(redis: Redis, settings: Settings, events: list[Event], poisoned: str) -> str:
    """Write a batch and let the worker fail it for real, as a misconfigured Redis ACL would:
    the worker's Redis user may not touch one message's key, so Redis refuses that event's
    script call (NOPERM, before the script runs) while the batch's other events apply."""
    allowed = sorted({e.message_id for e in events} - {poisoned})
    keys = ["~rq:*", "~otp:[^m]*", *(f"~{settings.keys.message('verihubs', m)}" for m in allowed)]
    redis.acl_setuser(
        APPLIER, enabled=True, passwords=["+pw"], commands=["+@all"], keys=keys, reset_keys=True
    )
    QueueWriter(redis, settings).write(events, Counter())
    (job_id,) = queue(redis, settings).job_ids
    work(redis, as_applier(settings))
    return job_id


def as_applier(settings: Settings) -> Settings:
    url = settings.redis.replace("redis://", f"redis://{APPLIER}:pw@")
    return make_settings(url, JOB_RETRIES="0")


def fix_acl(redis: Redis) -> None:
    redis.acl_setuser(APPLIER, enabled=True, keys=["~*"])
