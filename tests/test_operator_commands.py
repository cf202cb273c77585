"""The replay command the README and the runbook print works as printed: from the project
directory, with nothing exported, it finds make run's Redis in var/redis_url."""

from __future__ import annotations

import os
import subprocess
import sys

from core.events import Event
from core.queue import queue
from receiver.queue_writer import QueueWriter
from tests.support import ROOT, run_jobs

REPLAY = ["failed", "replay", "--all"]


def test_the_documented_replay_requeues_failed_batches_and_they_apply(
    redis, settings, store, reader, tmp_path
):
    event = Event("verihubs", "whatsapp-otp", "s-1", 2, 1_795_000_000_000, 1_795_000_000_000)
    QueueWriter(redis, settings).write([event], {})
    jobs = queue(redis, settings)
    (job,) = jobs.get_jobs()
    jobs.remove(job)
    jobs.failed_job_registry.add(job, exc_string="as if its worker had failed it")
    for doc in (ROOT / "README.md", ROOT / "docs" / "runbook.md"):
        assert ".venv/bin/otp-tracker " + " ".join(REPLAY) in doc.read_text()
    # A project directory after `make run`: var/redis_url, nothing in the environment.
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "redis_url").write_text(settings.redis + "\n")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "tools.cli", *REPLAY],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "replayed 1 failed batches" in done.stdout
    assert jobs.failed_job_registry.count == 0 and jobs.count == 1
    run_jobs(redis, settings)
    assert reader.message("verihubs", "s-1").state == "delivered"
