"""The worker process: a non-forking RQ worker on one queue, kept alive through Redis outages."""

from __future__ import annotations

import signal
import sys
import time
from functools import cached_property
from types import FrameType, TracebackType

import structlog
from redis import Redis
from redis.backoff import NoBackoff
from redis.client import Pipeline
from redis.commands.core import Script
from redis.exceptions import RedisError
from redis.retry import Retry
from rq import SimpleWorker
from rq.defaults import RQ_KEY_PREFIX
from rq.exceptions import StopRequested
from rq.executions import Execution, ExecutionRegistry
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.registry import StartedJobRegistry
from rq.results import Result
from rq.timeouts import JobTimeoutException
from rq.utils import as_text, now
from rq.worker import WorkerStatus

from core import logs, storage
from core.events import APPLY_BATCH
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
ExcInfo = tuple[type[BaseException] | None, BaseException | None, TracebackType | None]

# Moves up to ARGV[1] more jobs from the queue to its intermediate list, one at a time as
# RQ's dequeue moves one (LMOVE), and reads each one's hash: one round trip for them all.
# With each job (and first, the job RQ dequeued, ARGV[3]) come its earlier executions whose
# hash still lives (a dead worker's, id then worker name): RQ's success deletes them with the
# job (Job.delete -> ExecutionRegistry.delete). Jobs are RQ's keys, named by id (not
# cluster-safe, as RQ's own layout is not).
TAKE = """
local function earlier(id)
  local found = {}
  for _, e in ipairs(redis.call('ZRANGE', ARGV[4] .. id, 0, -1)) do
    local worker = redis.call('HGET', ARGV[5] .. id .. ':' .. e, 'worker_name')
    if worker then
      found[#found + 1] = e
      found[#found + 1] = worker
    end
  end
  return found
end
local taken = {earlier(ARGV[3])}
for _ = 1, tonumber(ARGV[1]) do
  local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not id then break end
  taken[#taken + 1] = id
  taken[#taken + 1] = redis.call('HGETALL', ARGV[2] .. id)
  taken[#taken + 1] = earlier(id)
end
return taken
"""
# Runs the commands RQ's own code queued on a pipeline (argument count, then the command), in
# order and atomically as MULTI/EXEC would, but as one command: redis-py's cost is per command,
# and RQ writes ten for each job it starts.
RUN = """
local i = 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return 1
"""


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
    # Per job of a take, its earlier executions whose hash still lives (TAKE).
    _earlier: dict[str, list[Execution]] = {}  # noqa: RUF012 - each take assigns its own dict

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

    # Many jobs at once -----------------------------------------------------------------------
    # While jobs wait in the queue, one dequeue takes up to this many: their events are applied
    # in one pipeline, and RQ's bookkeeping of them all is one transaction before and one after,
    # so RQ's round trips are paid per take, not per job (a serial provider client makes one
    # job per callback). Alone in the queue, a job takes RQ's own path.
    jobs_per_take = 64

    def execute_job(self, job: Job, queue: Queue) -> None:
        try:
            riders = self._take_more(job, queue)
            if riders:
                self._execute_together(job, riders, queue)
            else:
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

    def _batchable(self, job: Job) -> bool:
        """A job whose success RQ's path would only delete: ours, keeping no result, with no
        repeat, group or rate limit (nor dependents: the receiver enqueues none)."""
        return (
            job.func_name == APPLY_BATCH
            and job.get_result_ttl(self.default_result_ttl) == 0
            and not job.repeats_left
            and not job.group_id
            and not job.has_rate_limit
        )

    def _take_more(self, job: Job, queue: Queue) -> list[Job]:
        if self.jobs_per_take <= 1 or not self._batchable(job):
            return []
        taken = self._scripts[TAKE](
            keys=[queue.key, queue.intermediate_queue_key],
            args=[
                self.jobs_per_take - 1,
                self.job_class.redis_job_namespace_prefix,
                job.id,
                ExecutionRegistry.key_template.format(""),
                f"{RQ_KEY_PREFIX}:execution:",
            ],
        )
        self._earlier = {job.id: self._listed_executions(job.id, taken[0])}
        riders = []
        for job_id, flat, earlier in zip(taken[1::3], taken[2::3], taken[3::3], strict=True):
            rider = self.job_class(
                as_text(job_id), connection=self.connection, serializer=self.serializer
            )
            if not flat:  # deleted while queued: RQ's dequeue passes over it too
                self.connection.lrem(queue.intermediate_queue_key, 1, rider.id)
                continue
            rider.restore(dict(zip(flat[::2], flat[1::2], strict=True)))
            self._earlier[rider.id] = self._listed_executions(rider.id, earlier)
            riders.append(rider)
        return riders

    def _listed_executions(self, job_id: str, flat: list[bytes]) -> list[Execution]:
        return [
            Execution(as_text(e), job_id, self.connection, worker_name=as_text(w))
            for e, w in zip(flat[::2], flat[1::2], strict=True)
        ]

    def _execute_together(self, first: Job, riders: list[Job], queue: Queue) -> None:
        together = [first, *(r for r in riders if self._batchable(r))]
        executions = self._start_together(together, queue)
        batches, failures = [], []
        for job in together:
            try:
                batches.append((job, jobs.events_of(job.args, job.kwargs)))
            except Exception:  # a payload that is not events fails its job only
                failures.append((job, sys.exc_info()))
        if batches:
            timeout = min(job.timeout or self.queue_class.DEFAULT_TIMEOUT for job, _ in batches)
            try:
                with self.death_penalty_class(timeout, JobTimeoutException, job_id=first.id):
                    results = jobs.apply_batches([(job.id, events) for job, events in batches])
            except RedisError:
                if jobs.stopping():
                    raise  # every job stays started: maintenance retries them
                failures += [(job, sys.exc_info()) for job, _ in batches]
                batches, results = [], []
            except Exception:  # as in perform_job: the jobs fail, the worker goes on
                failures += [(job, sys.exc_info()) for job, _ in batches]
                batches, results = [], []
            succeeded = []
            for (job, _), result in zip(batches, results, strict=True):
                if isinstance(result, Exception):
                    failures.append((job, _exc_info(result)))
                else:
                    succeeded.append(job)
        else:
            succeeded = []
        self._finish_together(succeeded, executions)
        for job, exc_info in failures:
            self._finalize_failure(job, queue, executions[job.id], exc_info)
        for rider in riders:
            if not self._batchable(rider):
                super().execute_job(rider, queue)

    def _start_together(self, together: list[Job], queue: Queue) -> dict[str, Execution]:
        """RQ's prepare_execution and prepare_job_execution for every job, in one transaction:
        each job is either still in the intermediate list or started with its execution."""
        executions = {}
        with self.connection.pipeline(transaction=False) as pipe:
            ttl = 0
            for job in together:
                job_ttl = self.get_heartbeat_ttl(job)
                ttl = max(ttl, job_ttl)
                execution = Execution.create(job, job_ttl, pipeline=pipe, worker_name=self.name)
                self.executions[execution.id] = execution
                executions[job.id] = execution
                job.prepare_for_execution(self.name, pipeline=pipe)
                pipe.persist(job.key)
                pipe.lrem(queue.intermediate_queue_key, 1, job.id)
            self.set_state(WorkerStatus.BUSY, pipeline=pipe)
            self.heartbeat(ttl, pipeline=pipe)
            self._run(pipe)
        return executions

    def _finish_together(self, succeeded: list[Job], executions: dict[str, Execution]) -> None:
        """What RQ's handle_job_success writes for a job without result, repeat or dependents
        (job.cleanup(0) and cleanup_execution), for every job in one transaction, with the
        replay markers: until it commits a retry finds every applied event marked."""
        ended = now()
        with self.connection.pipeline(transaction=False) as pipe:
            worked = 0.0
            for job in succeeded:
                job.ended_at, job._status = ended, JobStatus.FINISHED
                worked += (ended - job.started_at).total_seconds() if job.started_at else 0.0
                execution = executions[job.id]
                for done in (execution, *self._earlier.get(job.id, ())):
                    done.delete(job=job, pipeline=pipe)
                self.executions.pop(execution.id, None)
                pipe.delete(
                    job.key,
                    job.dependents_key,
                    job.dependencies_key,
                    Result.get_key(job.id),
                    job.execution_registry.key,
                    self.keys.applied(job.id),
                )
            if succeeded:
                pipe.hincrby(self.key, "successful_job_count", len(succeeded))
                pipe.hincrbyfloat(self.key, "total_working_time", worked)
            self.set_state(WorkerStatus.IDLE, pipeline=pipe)
            self._run(pipe)

    def _run(self, pipe: Pipeline) -> None:
        """The writes queued on `pipe`, atomically in one command (RUN)."""
        argv: list[object] = []
        for args, _options in pipe.command_stack:
            argv.append(len(args))
            argv.extend(args)
        self._scripts[RUN](args=argv)

    @cached_property
    def _scripts(self) -> dict[str, Script]:
        # EVALSHA, loading the script again after a restart of Redis (redis-py's Script).
        return {text: self.connection.register_script(text) for text in (TAKE, RUN)}

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

    def teardown(self) -> None:
        try:
            super().teardown()
        except RedisError as exc:
            # The worker's key and registrations expire by themselves.
            log.warning("worker left without reaching redis", error=str(exc))
            if self.pubsub_thread is not None:
                self.pubsub_thread.stop()


def _exc_info(error: Exception) -> ExcInfo:
    """An error Redis answered for one event, as RQ records a job's exception."""
    try:
        raise error
    except Exception:
        return sys.exc_info()


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
    _stop_outside_rq()
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
            _stop_outside_rq()
        time.sleep(RESTART_PAUSE)


def _stop_outside_rq() -> None:
    """Outside RQ's loop (starting, or restarting after Redis was lost) no batch is in hand:
    SIGTERM or SIGINT ends the process at once, and cleanly (exit status 0, as from RQ's
    loop), not killed by the signal."""
    signal.signal(signal.SIGTERM, _leave)
    signal.signal(signal.SIGINT, _leave)


def _leave(signum: int, frame: object) -> None:
    raise SystemExit(0)


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
