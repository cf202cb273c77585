"""The replay command the README and the runbook print works as printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core.events import Event
from core.queue import queue
from receiver.queue_writer import QueueWriter
from tests.support import ROOT, run_jobs

RQ = str(Path(sys.executable).parent / "rq")
REPLAY = [
    "requeue",
    "--all",
    "--queue",
    "otp-callbacks",
    "--serializer",
    "core.queue.JobSerializer",
]


def test_the_documented_replay_requeues_failed_batches_and_they_apply(
    redis, settings, store, reader
):
    event = Event("verihubs", "whatsapp-otp", "s-1", 2, 1_795_000_000_000, 1_795_000_000_000)
    QueueWriter(redis, settings).write([event], {})
    jobs = queue(redis, settings)
    (job,) = jobs.get_jobs()
    jobs.remove(job)
    jobs.failed_job_registry.add(job, exc_string="as if its worker had failed it")
    for doc in (ROOT / "README.md", ROOT / "docs" / "runbook.md"):
        assert " ".join(REPLAY) in doc.read_text()
    url = settings.redis
    done = subprocess.run([RQ, *REPLAY, "--url", url], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert jobs.failed_job_registry.count == 0 and jobs.count == 1
    run_jobs(redis, settings)
    assert reader.message("verihubs", "s-1").state == "delivered"
