"""Reading the outbox's delivery state back: each endpoint's backlog and dead events.

The forwarder (`workers.forward`) writes these structures; the metrics collector reads them
here (`otp_forward_backlog_events`, `otp_forward_dead_events`).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis
from redis.exceptions import ResponseError

from core.keys import Keys

# Redis before 7 reports no group lag: the unread entries are counted, up to this many.
UNREAD_COUNT_CAP = 10_000


@dataclass(frozen=True)
class EndpointState:
    endpoint: str  # its index in FORWARD_URL
    # Events not delivered yet: unread in the outbox, taken and in flight, waiting to retry.
    backlog: int
    # Events that exhausted their retries, kept for replay.
    dead: int


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def endpoint_states(redis: Redis, keys: Keys) -> list[EndpointState]:
    """One row per endpoint the forwarder last configured; none when forwarding is off."""
    # HSCAN, not HGETALL: the counters hash's HGETALL is one per scrape (tests count it).
    found = redis.hscan_iter(keys.forward_endpoints)
    endpoints = {_text(k): _text(v) for k, v in found}
    if not endpoints:
        return []
    try:
        groups = {_text(g["name"]): g for g in redis.xinfo_groups(keys.outbox)}
    except ResponseError:  # no stream yet
        groups = {}
    states = []
    for index, group in sorted(endpoints.items(), key=lambda item: int(item[0])):
        info = groups.get(group)
        unread = 0
        if info is not None:
            lag = info.get("lag")
            if lag is None:
                last = _text(info.get("last-delivered-id")) or "0-0"
                unread = len(redis.xrange(keys.outbox, f"({last}", "+", count=UNREAD_COUNT_CAP))
            else:
                unread = int(lag)
        pending = int(info["pending"]) if info is not None else 0
        waiting = int(redis.zcard(keys.forward_retry(group)))
        dead = int(redis.zcard(keys.forward_dead(group)))
        states.append(EndpointState(index, unread + pending + waiting, dead))
    return states
