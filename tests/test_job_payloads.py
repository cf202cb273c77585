"""Job payloads are plain JSON; jobs pickled before the upgrade still apply, and a pickle that
names any code is refused without running it."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

from rq import Queue
from rq.job import Job

from core.events import APPLY_BATCH, Event
from core.queue import queue
from receiver.queue_writer import QueueWriter
from tests.support import run_jobs

EVENT = Event("verihubs", "whatsapp-otp", "s-1", 2, 1_795_000_000_000, 1_795_000_000_000)


def test_jobs_are_written_as_json(redis, settings):
    QueueWriter(redis, settings).write([EVENT], {})
    (job_id,) = redis.lrange(f"rq:queue:{settings.queue_name}", 0, -1)
    data = zlib.decompress(redis.hget(f"rq:job:{job_id.decode()}", "data"))  # rq compresses
    assert data.startswith(b"[") and b'"workers.jobs.apply_batch"' in data


def test_a_job_pickled_before_the_upgrade_still_applies(redis, settings, store, reader):
    old = Queue(settings.queue_name, connection=redis)  # rq's default: pickle
    old.enqueue(APPLY_BATCH, [EVENT.to_wire()], result_ttl=0)
    run_jobs(redis, settings)
    assert reader.message("verihubs", "s-1").state == "delivered"
    assert queue(redis, settings).failed_job_registry.count == 0


class Touch:
    """A pickle that, loaded with pickle.loads, would create a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (str(self.path),))


def test_a_pickle_that_names_code_is_refused_without_running_it(redis, settings, store, tmp_path):
    evil = tmp_path / "evil"
    old = Queue(settings.queue_name, connection=redis)
    job = old.enqueue(APPLY_BATCH, [Touch(evil)], result_ttl=0)
    run_jobs(redis, settings)
    assert not evil.exists()
    assert Job.fetch(job.id, connection=redis, serializer=queue(redis, settings).serializer)
    assert job.id in queue(redis, settings).failed_job_registry.get_job_ids()


def test_a_job_of_seven_fields_written_before_raw_existed_still_applies(redis, settings, reader):
    queue(redis, settings).enqueue(APPLY_BATCH, [list(EVENT.to_wire())[:7]], result_ttl=0)
    run_jobs(redis, settings)
    view = reader.message("verihubs", "s-1")
    assert view.state == "delivered"
    assert [(h.provider_status, h.status) for h in view.history] == [("2", "delivered")]
