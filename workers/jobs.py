"""The RQ job: apply one batch of callbacks."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog
from redis.exceptions import ConnectionError, TimeoutError
from rq import get_current_job

from core.events import Event
from core.model import Outcome
from workers.store import Store

log = structlog.get_logger("worker")
RETRY_PAUSE = 0.5
T = TypeVar("T")


@dataclass(frozen=True)
class Binding:
    store: Store
    # How long a batch keeps retrying through a Redis outage before the job fails.
    retry_window: float


_binding: Binding | None = None
# Set when the worker is asked to stop: a batch caught by a Redis outage stops retrying.
_stopping = threading.Event()


def bind(store: Store, retry_window: float = 30.0) -> None:
    """Give the job its store; called once by the worker factory, never at import time."""
    global _binding
    _binding = Binding(store, retry_window)
    _stopping.clear()


def request_stop() -> None:
    """The worker was asked to stop: give up a batch that waits for Redis to come back (it
    stays started in Redis, and RQ's maintenance retries it once its heartbeat lapses)."""
    _stopping.set()


def stopping() -> bool:
    return _stopping.is_set()


def apply_batch(events: list[tuple[str, str, str, int, int, int, int, str]]) -> dict[str, int]:
    binding = _bound()
    job = get_current_job()
    batch_id = job.id if job is not None else "inline"
    started = time.perf_counter()
    batch = [Event(*e) for e in events]
    outcomes = _through_outages(binding, batch_id, lambda: binding.store.apply(batch_id, batch))
    summary = Counter(o.value if o else "replayed" for o in outcomes)
    log.info(
        "batch applied",
        job_id=batch_id,
        events=len(events),
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
        **summary,
    )
    return dict(summary)


def events_of(args: tuple, kwargs: dict) -> list[Event]:
    """A job's payload as apply_batch takes it; TypeError or ValueError if it is not events."""

    def take(events: list[tuple[str, str, str, int, int, int, int, str]]) -> list[Event]:
        return [Event(*e) for e in events]

    return take(*args, **kwargs)


def apply_batches(
    batches: list[tuple[str, list[Event]]],
) -> list[list[Outcome | None] | Exception]:
    """Several jobs' batches at once (workers.main.BatchWorker takes them together): per
    batch its outcomes or the error Redis answered for one of its events."""
    binding = _bound()
    started = time.perf_counter()
    first = batches[0][0]
    results = _through_outages(binding, first, lambda: binding.store.apply_many(batches))
    log.info(
        "batches applied",
        jobs=len(batches),
        events=sum(len(events) for _, events in batches),
        failed=sum(isinstance(r, Exception) for r in results),
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
    )
    return results


def _bound() -> Binding:
    if _binding is None:
        raise RuntimeError("workers.jobs.bind() was not called: start the worker via its factory")
    return _binding


def _through_outages(binding: Binding, batch_id: str, apply: Callable[[], T]) -> T:
    """Re-applying a batch is exact (replay markers), so a Redis blip is simply retried."""
    deadline = time.monotonic() + binding.retry_window
    while True:
        try:
            return apply()
        except (ConnectionError, TimeoutError) as exc:
            if _stopping.is_set() or time.monotonic() > deadline:
                raise
            log.warning("redis unavailable, retrying batch", job_id=batch_id, error=str(exc))
            if _stopping.wait(RETRY_PAUSE):
                raise
