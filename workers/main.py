"""The worker process: a non-forking RQ worker on one queue."""

from __future__ import annotations

from redis.client import Pipeline
from rq import Queue, SimpleWorker
from rq.utils import now

from core import logs
from core.redis import connect
from core.settings import Settings
from workers import jobs
from workers.store import Store


def store_for(settings: Settings) -> Store:
    # Replay markers must outlive any retry or replay of a failed job.
    return Store(connect(settings), settings.message_ttl, settings.failed_job_ttl)


class BatchWorker(SimpleWorker):
    """SimpleWorker: forking a work horse per job costs more than applying a whole batch."""

    # Come back quickly after a Redis outage (RQ's default backoff grows to a minute).
    max_connection_wait_time = 2.0
    # A batch's description says only how many callbacks it holds; keep logs short anyway.
    log_job_description = False
    # RQ beats three round trips several times per job; the worker's key lives for minutes,
    # so one standalone beat a second keeps it just as alive at a fraction of the cost.
    heartbeat_interval = 1.0

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        recent = self.last_heartbeat is not None and (
            (now() - self.last_heartbeat).total_seconds() < self.heartbeat_interval
        )
        if pipeline is None and recent:
            return
        super().heartbeat(timeout, pipeline)


def create_worker(settings: Settings) -> BatchWorker:
    jobs.bind(store_for(settings), retry_window=settings.job_timeout / 2)
    conn = connect(settings, blocking=True)
    return BatchWorker(
        [Queue(settings.queue_name, connection=conn)],
        connection=conn,
        default_result_ttl=0,
        maintenance_interval=settings.maintenance_interval,
    )


def main() -> None:
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    create_worker(settings).work(logging_level="WARNING", with_scheduler=False)


if __name__ == "__main__":
    main()
