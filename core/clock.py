"""The one clock: epoch milliseconds, and how they are shown."""

from __future__ import annotations

import time
from datetime import UTC, datetime

# A provider's clock is believed within these bounds of our receipt time; a time outside
# them (a bug, a replay from long ago) would put the message on a wrong billing day.
MAX_AGE_MS = 30 * 86_400_000
MAX_AHEAD_MS = 3_600_000


def plausible(at_ms: int, received_ms: int) -> int:
    """The provider's time, or our receipt time where the provider's is implausible."""
    if received_ms - MAX_AGE_MS <= at_ms <= received_ms + MAX_AHEAD_MS:
        return at_ms
    return received_ms


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
