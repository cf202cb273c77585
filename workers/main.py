"""The worker process: a non-forking RQ worker on one queue, kept alive through Redis outages."""

from __future__ import annotations

import signal
import time

import structlog
from redis.client import Pipeline
from redis.exceptions import RedisError
from rq import SimpleWorker
from rq.job import Job
from rq.utils import now

from core import logs
from core.queue import JobSerializer, queue
from core.redis import connect
from core.settings import Settings
from workers import jobs
from workers.store import Store

log = structlog.get_logger("worker")
RESTART_PAUSE = 2.0


class BatchWorker(SimpleWorker):
    """SimpleWorker: forking a work horse per job costs more than applying a whole batch."""

    # Come back quickly after a Redis outage (RQ's default backoff grows to a minute).
    max_connection_wait_time = 2.0
    # A batch's description says only how many callbacks it holds; keep logs short anyway.
    log_job_description = False
    # RQ beats three round trips several times per job; the worker's key lives for minutes,
    # so one standalone beat a second keeps it just as alive at a fraction of the cost.
    heartbeat_interval = 1.0
    # A job of a dead worker is retried once its timeout plus this grace has passed (RQ's
    # SimpleWorker waits a fixed 60 s more; a batch takes milliseconds).
    abandoned_grace = 10

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        recent = self.last_heartbeat is not None and (
            (now() - self.last_heartbeat).total_seconds() < self.heartbeat_interval
        )
        if pipeline is None and recent:
            return
        super().heartbeat(timeout, pipeline)

    @property
    def dequeue_timeout(self) -> int:
        # RQ blocks on an idle queue for ~7 minutes between maintenance runs; wake up in time
        # to find abandoned jobs on schedule.
        return max(1, min(self.worker_ttl - 15, self.maintenance_interval))

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return int(job.timeout if job.timeout and job.timeout > 0 else 60) + self.abandoned_grace


def store_for(settings: Settings) -> Store:
    return Store.from_settings(connect(settings), settings)


def create_worker(settings: Settings) -> BatchWorker:
    jobs.bind(store_for(settings), retry_window=settings.job_timeout / 2)
    conn = connect(settings, blocking=True)
    return BatchWorker(
        [queue(conn, settings)],
        connection=conn,
        serializer=JobSerializer,
        default_result_ttl=0,
        maintenance_interval=settings.maintenance_interval,
    )


def run(settings: Settings) -> None:
    """RQ's loop quits on an unexpected Redis error; start it again until asked to stop.

    A batch the old loop was applying is retried by RQ's maintenance once its heartbeat
    lapses (job timeout + grace); applying it again is exact.
    """
    while True:
        try:
            worker = create_worker(settings)
            worker.work(logging_level="WARNING", with_scheduler=False)
        except RedisError as exc:
            log.warning("worker lost redis, restarting", error=str(exc))
        else:
            if worker._shutdown_requested_date is not None:  # SIGTERM/SIGINT: warm shutdown
                return
            log.warning("worker loop ended, restarting")
        finally:
            # RQ leaves its stop handlers behind; a SIGTERM during the pause must still stop us.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
        time.sleep(RESTART_PAUSE)


def main() -> None:
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    run(settings)


if __name__ == "__main__":
    main()
