"""The delivery timer: fires `message.delivery_timeout` for messages overdue (timer.lua)."""

from __future__ import annotations

from redis.asyncio import Redis

from core.clock import now_ms
from core.keys import Keys
from workers import script

# Timers taken per call: bounds one script's run (Redis does nothing else meanwhile).
BATCH = 500


class Timers:
    def __init__(self, redis: Redis, keys: Keys, outbox_max_events: int) -> None:
        self.redis = redis
        self.keys = keys
        self.outbox_max_events = outbox_max_events
        self._script = redis.register_script(script.source("timer.lua"))

    async def fire_due(self, now: int | None = None) -> int:
        """Fire every timer due by `now` (ms); how many timeouts were emitted."""
        fired = 0
        while True:
            taken, emitted = await self._script(
                keys=[self.keys.timers, self.keys.outbox, self.keys.counters],
                args=[
                    now_ms() if now is None else now,
                    BATCH,
                    self.keys.message_prefix,
                    self.outbox_max_events,
                ],
            )
            fired += int(emitted)
            if int(taken) < BATCH:
                return fired
