"""The worker process: a non-forking RQ worker on one queue, kept alive through Redis outages."""

from __future__ import annotations

import signal
import time
from types import FrameType

import structlog
from redis import Redis
from redis.backoff import NoBackoff
from redis.client import Pipeline
from redis.exceptions import RedisError
from redis.retry import Retry
from rq import SimpleWorker
from rq.exceptions import StopRequested
from rq.executions import Execution, ExecutionRegistry
from rq.job import Job
from rq.queue import Queue
from rq.registry import StartedJobRegistry
from rq.utils import now

from core import logs, storage
from core.keys import DEFAULT, Keys
from core.queue import JobSerializer, queue
from core.redis import connect
from core.settings import Settings
from workers import jobs
from workers.store import Store

log = structlog.get_logger("worker")
RESTART_PAUSE = 2.0
# Once asked to stop, a connection to an unreachable Redis is given up this fast.
STOP_CONNECT_TIMEOUT = 0.5


class LiveExecutions(ExecutionRegistry):
    """A job's executions, leaving out those whose hash has expired.

    RQ 3.0.0 lists an execution in `rq:executions:<job id>` for 60 s longer than its hash
    lives (rq/executions.py:112 expires the hash after the heartbeat TTL, :178 scores the
    entry TTL + 60 s), and maintenance requeues a dead worker's job without deleting that
    execution (rq/registry.py:315). Reading it back raises (rq/executions.py:75), so a
    retried batch finishing within that minute failed in RQ's clean-up of a job without
    results (Job.cleanup -> delete -> remove_executions, rq/registry.py:436) after every
    event had been applied, and its retries failed the same way until the failed registry.
    RQ reads a worker's own index of executions just as tolerantly
    (`BaseWorker.get_current_executions`).
    """

    def get_executions(self, start: int = 0, end: int = -1) -> list[Execution]:
        ids = self.get_execution_ids(start, end)
        found = [Execution(i, self.job_id, self.connection) for i in ids]
        if not found:
            return []
        with self.connection.pipeline(transaction=False) as pipe:
            for execution in found:
                pipe.hgetall(execution.key)
            hashes = pipe.execute()
        live = []
        for execution, data in zip(found, hashes, strict=True):
            if data:
                execution.restore(data)
                live.append(execution)
        return live


class BatchJob(Job):
    @property
    def execution_registry(self) -> ExecutionRegistry:
        return LiveExecutions(self.id, connection=self.connection)


class BatchWorker(SimpleWorker):
    """SimpleWorker: forking a work horse per job costs more than applying a whole batch."""

    job_class = BatchJob
    # The deployment's keys (its replay markers); create_worker sets them from settings.
    keys: Keys = DEFAULT
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
    # The job whose success is being written (its replay marker goes in the same transaction).
    _finishing: str | None = None

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

    # A finished batch's replay marker ------------------------------------------------------

    def handle_job_success(
        self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry, execution: Execution
    ) -> None:
        self._finishing = job.id
        try:
            super().handle_job_success(job, queue, started_job_registry, execution)
        finally:
            self._finishing = None

    def cleanup_execution(
        self, job: Job, pipeline: Pipeline, execution: Execution | None = None
    ) -> None:
        super().cleanup_execution(job, pipeline, execution)
        if job.id == self._finishing:
            # In RQ's transaction that takes the job off the started registry and deletes
            # it: until that commits, a retry still finds every applied event marked; once
            # it has, the batch is gone and nothing can run it again. A failed batch keeps
            # its marker (FAILED_JOB_TTL), so a replay of it stays exact.
            pipeline.delete(self.keys.applied(job.id))

    # Stopping, with or without Redis ---------------------------------------------------------

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        jobs.request_stop()
        _fail_fast(self.connection)
        super().request_stop(signum, frame)

    def set_shutdown_requested_date(self) -> None:
        try:
            super().set_shutdown_requested_date()
        except RedisError as exc:
            log.warning("stop request not recorded in redis", error=str(exc))

    def execute_job(self, job: Job, queue: Queue) -> None:
        try:
            super().execute_job(job, queue)
        except RedisError as exc:
            if not jobs.stopping():
                raise
            log.warning(
                "stopped while redis is unreachable: the batch is retried once its heartbeat"
                " lapses",
                job_id=job.id,
                error=str(exc),
            )
            raise StopRequested from None

    def teardown(self) -> None:
        try:
            super().teardown()
        except RedisError as exc:
            # The worker's key and registrations expire by themselves.
            log.warning("worker left without reaching redis", error=str(exc))
            if self.pubsub_thread is not None:
                self.pubsub_thread.stop()


def _fail_fast(redis: Redis) -> None:
    """Stopping: a call to an unreachable Redis fails at once instead of retrying for seconds."""
    redis.set_retry(Retry(NoBackoff(), 0))
    redis.connection_pool.connection_kwargs["socket_connect_timeout"] = STOP_CONNECT_TIMEOUT


def store_for(settings: Settings) -> Store:
    redis = connect(settings)
    # The job retries a batch itself (workers.jobs), pausing between tries and giving up when
    # the worker is asked to stop; redis-py's own retries would hold each try for seconds.
    redis.set_retry(Retry(NoBackoff(), 0))
    return Store.from_settings(redis, settings)


def create_worker(settings: Settings) -> BatchWorker:
    jobs.bind(store_for(settings), retry_window=settings.job_timeout / 2)
    conn = connect(settings, blocking=True)
    worker = BatchWorker(
        [queue(conn, settings)],
        connection=conn,
        serializer=JobSerializer,
        default_result_ttl=0,
        maintenance_interval=settings.maintenance_interval,
    )
    worker.keys = settings.keys
    return worker


def run(settings: Settings) -> None:
    """RQ's loop quits on an unexpected Redis error; start it again until asked to stop.

    A batch the old loop was applying is retried by RQ's maintenance once its heartbeat
    lapses (job timeout + grace); applying it again is exact. Asked to stop (SIGTERM,
    SIGINT), the worker finishes the batch in hand, or gives it up if Redis is unreachable,
    and leaves without waiting for Redis.
    """
    while True:
        try:
            worker = create_worker(settings)
            worker.work(logging_level="WARNING", with_scheduler=False)
        except RedisError as exc:
            if jobs.stopping():
                return
            log.warning("worker lost redis, restarting", error=str(exc))
        else:
            if jobs.stopping() or worker._shutdown_requested_date is not None:
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
    check_storage(settings)
    run(settings)


def check_storage(settings: Settings) -> None:
    """An evicting Redis stops the worker; one that is away is waited for by the run loop."""
    redis = connect(settings)
    try:
        storage.check(redis, settings.allow_evicting_redis)
    except RedisError as exc:
        log.warning("redis unreachable at start-up", error=type(exc).__name__)
    finally:
        redis.close()


if __name__ == "__main__":
    main()
