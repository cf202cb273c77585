"""The normalised callback: what the receiver hands to the workers, whatever the provider."""

from __future__ import annotations

from typing import NamedTuple

# The worker's job, by import string (as rq's docs enqueue): the web never imports workers.
APPLY_BATCH = "workers.jobs.apply_batch"


class Event(NamedTuple):
    provider: str
    product: str
    message_id: str
    code: int
    # When the status happened: the provider's timestamp where it sends one, else receipt.
    at_ms: int
    received_ms: int
    # The provider's own billing flag for the message, where it sends one (Meta's
    # pricing.billable): 1 billable, 0 not, -1 none. Defaulted: older 6-field payloads decode.
    billable: int = -1
    # The provider's status as sent (validated by its adapter to [A-Za-z0-9._:-]), shown in
    # the message's history; empty where the code says it all (Verihubs). Defaulted: older
    # 7-field payloads decode.
    raw: str = ""

    def to_wire(self) -> tuple[str, str, str, int, int, int, int, str]:
        """A plain tuple: the job payload must not depend on this class's import path."""
        return tuple(self)  # type: ignore[return-value]
