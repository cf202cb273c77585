"""The RQ job: apply one batch of callbacks."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass

import structlog
from redis.exceptions import ConnectionError, TimeoutError
from rq import get_current_job

from core.events import Event
from core.model import Outcome
from workers.store import Store

log = structlog.get_logger("worker")
RETRY_PAUSE = 0.5


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
    if _binding is None:
        raise RuntimeError("workers.jobs.bind() was not called: start the worker via its factory")
    job = get_current_job()
    batch_id = job.id if job is not None else "inline"
    started = time.perf_counter()
    outcomes = _apply_through_outages(_binding, batch_id, [Event(*e) for e in events])
    summary = Counter(o.value if o else "replayed" for o in outcomes)
    log.info(
        "batch applied",
        job_id=batch_id,
        events=len(events),
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
        **summary,
    )
    return dict(summary)


def _apply_through_outages(
    binding: Binding, batch_id: str, events: list[Event]
) -> list[Outcome | None]:
    """Re-applying a batch is exact (replay markers), so a Redis blip is simply retried."""
    deadline = time.monotonic() + binding.retry_window
    while True:
        try:
            return binding.store.apply(batch_id, events)
        except (ConnectionError, TimeoutError) as exc:
            if _stopping.is_set() or time.monotonic() > deadline:
                raise
            log.warning("redis unavailable, retrying batch", job_id=batch_id, error=str(exc))
            if _stopping.wait(RETRY_PAUSE):
                raise
