"""Every Redis key the tracker owns (RQ owns its own `rq:*` keys)."""

PREFIX = "otp"
COUNTERS = f"{PREFIX}:counters"
BILLING = f"{PREFIX}:billing"


def message(provider: str, message_id: str) -> str:
    return f"{PREFIX}:m:{provider}:{message_id}"


def applied(batch_id: str) -> str:
    """Bitmap of the events of one batch already applied: a replayed batch counts nothing."""
    return f"{PREFIX}:applied:{batch_id}"
