"""Every Redis key the tracker owns (RQ owns its own `rq:*` keys), and the fields of the
hashes behind them.

`workers/script.py` templates these names into `apply.lua` and `core/read.py` reads them
back, so the script that writes a hash and the code that reads it cannot drift apart.
Stored names are part of the data: renaming one orphans what Redis already holds.
"""

from __future__ import annotations

from enum import StrEnum

PREFIX = "otp"
COUNTERS = f"{PREFIX}:counters"
BILLING = f"{PREFIX}:billing"


def message(provider: str, message_id: str) -> str:
    return f"{PREFIX}:m:{provider}:{message_id}"


def applied(batch_id: str) -> str:
    """Bitmap of the events of one batch already applied: a replayed batch counts nothing."""
    return f"{PREFIX}:applied:{batch_id}"


class MessageField(StrEnum):
    """Fields of a message hash. Besides these, `<bit>` holds the first-seen ms of the status
    with that bit (`status_field`) and `u<code>` that of an unknown code (`unknown_field`)."""

    PRODUCT = "p"
    # Bitmask of the statuses seen.
    SEEN = "m"
    # First callback, ms: the billing day.
    FIRST = "f"
    # Latency stages already observed (a bit per stage).
    OBSERVED = "o"
    DUPLICATES = "d"
    LATE = "l"
    # The provider's billing flags seen (`core.model.BillingFlag`).
    FLAGS = "b"
    UNKNOWN_PREFIX = "u"


def status_field(bit: int) -> str:
    return str(bit)


def unknown_field(code: int) -> str:
    return f"{MessageField.UNKNOWN_PREFIX}{code}"
