"""Moments as operators type them: an ISO 8601 time, or a duration before now (`15m`)."""

from __future__ import annotations

import re
from datetime import datetime

UNITS_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
DURATION_RE = re.compile(r"([0-9]{1,6})([smhdw])")
# Far enough back for any question about tracked messages, near enough to stay plausible.
MAX_BACK_MS = 400 * 86_400_000


def moment(text: str, now_ms: int) -> int:
    """Epoch ms of `text`: `90s`, `15m`, `1h`, `7d`, `2w` before `now_ms`, or an ISO 8601
    time with its offset (`2026-11-30T10:00:00+07:00`, `...Z`). ValueError says what is
    wrong."""
    text = text.strip()
    if match := DURATION_RE.fullmatch(text):
        back = int(match[1]) * UNITS_MS[match[2]]
        if back > MAX_BACK_MS:
            raise ValueError(f"{text!r} is more than 400 days back")
        return now_ms - back
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text[:40]!r} is neither a duration (90s, 15m, 1h, 7d, 2w) nor an ISO 8601 time"
        ) from None
    if parsed.tzinfo is None:
        raise ValueError(f"{text[:40]!r} has no UTC offset (add Z or +07:00)")
    return int(parsed.timestamp() * 1000)
