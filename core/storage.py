"""What the tracker requires of its Redis, checked when a process starts.

Redis is the only state: an evicting memory policy would silently drop counters, billing
and queued jobs, so a process refuses to start on one unless the operator explicitly
overrides it; and whether the data survives a restart (AOF, RDB) is said in the log.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from redis import Redis
from redis.exceptions import ResponseError

log = structlog.get_logger("storage")
# The only maxmemory-policy under which Redis refuses a write instead of dropping data.
SAFE_POLICY = "noeviction"


class EvictingRedis(RuntimeError):
    """Redis may evict keys: the tracker would lose accepted callbacks and billing."""


@dataclass(frozen=True)
class Memory:
    used_memory: int
    # 0: no limit (Redis grows until the machine runs out).
    maxmemory: int
    policy: str

    @property
    def evicts(self) -> bool:
        return self.policy != SAFE_POLICY


@dataclass(frozen=True)
class RedisFacts(Memory):
    aof: bool
    # RDB snapshot rules (`save`), "" when none; None when CONFIG is not allowed.
    rdb: str | None

    @property
    def persists(self) -> bool:
        return self.aof or bool(self.rdb)


def memory(redis: Redis) -> Memory:
    """One INFO: what the receiver's memory guard refreshes every second."""
    info = redis.info("memory")
    return Memory(
        used_memory=int(info["used_memory"]),
        maxmemory=int(info.get("maxmemory", 0)),
        policy=str(info.get("maxmemory_policy", SAFE_POLICY)),
    )


def inspect(redis: Redis) -> RedisFacts:
    """Memory and persistence: what a process checks once, at start-up."""
    persistence = redis.info("persistence")
    try:
        rdb: str | None = str(redis.config_get("save").get("save", ""))
    except ResponseError:  # CONFIG renamed or refused, as managed services do
        rdb = None
    aof = bool(int(persistence.get("aof_enabled", 0)))
    return RedisFacts(**vars(memory(redis)), aof=aof, rdb=rdb)


def check(redis: Redis, allow_eviction: bool) -> RedisFacts:
    """Refuse an evicting Redis (unless allowed, then say so loudly); log its persistence."""
    facts = inspect(redis)
    if facts.evicts and not allow_eviction:
        raise EvictingRedis(
            f"Redis maxmemory-policy is {facts.policy!r}: it may evict callbacks, counters and "
            f"billing. Set `maxmemory-policy {SAFE_POLICY}` (or ALLOW_EVICTING_REDIS=true)"
        )
    if facts.evicts:
        log.error("redis may evict data: accepted callbacks can be lost", policy=facts.policy)
    fields = {"aof": facts.aof, "rdb": facts.rdb, "maxmemory": facts.maxmemory}
    if facts.persists:
        log.info("redis persistence", **fields)
    else:
        log.warning("redis keeps nothing on disk: a restart loses everything", **fields)
    return facts
