"""The delivery timer: fires `message.delivery_timeout` for messages overdue (timer.lua)."""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files

from redis.asyncio import Redis

from core import webhooks
from core.clock import now_ms
from core.keys import Keys
from workers import script

# Timers taken per call: bounds one script's run (Redis does nothing else meanwhile).
BATCH = 500


def outbox_constants() -> dict[str, str]:
    """The outbox's names, for the scripts that append to it."""
    fields = {f.name.lower(): f.value for f in webhooks.OutboxField}
    return {
        "__OUTBOX_FIELDS__": script._lua_table(fields),
        "__TIMEOUT_TYPE__": script._lua_value(webhooks.TIMEOUT_TYPE_FIELD),
        "__STATE_TYPE__": script._lua_value(webhooks.STATE_TYPE_FIELD),
    }


@cache
def source() -> str:
    text = files("workers").joinpath("timer.lua").read_text()
    for name, value in {**script.constants(), **outbox_constants()}.items():
        text = text.replace(name, value)
    left = re.findall(r"__[A-Z_]+__", text)
    if left:
        raise RuntimeError(f"timer.lua names constants the renderer does not know: {left}")
    return text


class Timers:
    def __init__(self, redis: Redis, keys: Keys, outbox_max_events: int) -> None:
        self.redis = redis
        self.keys = keys
        self.outbox_max_events = outbox_max_events
        self._script = redis.register_script(source())

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
