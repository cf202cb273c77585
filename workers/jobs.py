"""The RQ job: apply one batch of callbacks."""

from __future__ import annotations

import time
from collections import Counter

import structlog
from rq import get_current_job

from core.events import Event
from workers.store import Store

log = structlog.get_logger("worker")
_store: Store | None = None


def bind(store: Store) -> None:
    """Give the job its store; called once by the worker factory, never at import time."""
    global _store
    _store = store


def apply_batch(events: list[tuple[str, str, str, int, int, int]]) -> dict[str, int]:
    if _store is None:
        raise RuntimeError("workers.jobs.bind() was not called: start the worker via its factory")
    job = get_current_job()
    batch_id = job.id if job is not None else "inline"
    started = time.perf_counter()
    outcomes = _store.apply(batch_id, [Event(*e) for e in events])
    summary = Counter(o.value if o else "replayed" for o in outcomes)
    log.info(
        "batch applied",
        job_id=batch_id,
        events=len(events),
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
        **summary,
    )
    return dict(summary)
