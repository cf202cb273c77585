"""The catalogue of Redis-held counters and histograms.

The Lua apply script and the receiver increment fields of one Redis hash named
`<family>|<label value>|...`; the metrics collector turns them back into Prometheus families.
Keeping them in Redis (not in process memory) makes them exact across any number of
processes and machines, and lets them survive restarts.
"""

from __future__ import annotations

from dataclasses import dataclass

SEP = "|"


@dataclass(frozen=True)
class Family:
    key: str
    name: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()
    # Histogram sums are kept as integers: seconds are stored in milliseconds.
    sum_scale: int = 1000

    @property
    def is_histogram(self) -> bool:
        return bool(self.buckets)

    def field(self, *values: str) -> str:
        return SEP.join((self.key, *values))


PROVIDER_PRODUCT = ("provider", "product")
LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

RECEIVED = Family(
    "received",
    "otp_callbacks_received",
    "Callbacks applied, by status",
    (*PROVIDER_PRODUCT, "status"),
)
REJECTED = Family(
    "rejected", "otp_callbacks_rejected", "Callbacks refused by the receiver", ("reason",)
)
SEEN = Family(
    "seen",
    "otp_message_statuses",
    "Messages that reached each status (counted once per message and status)",
    (*PROVIDER_PRODUCT, "status"),
)
DUPLICATE = Family(
    "duplicate", "otp_callbacks_duplicate", "Callbacks for a status already seen", PROVIDER_PRODUCT
)
LATE = Family(
    "late", "otp_callbacks_late", "New statuses below the current state", PROVIDER_PRODUCT
)
CONFLICT = Family(
    "conflict",
    "otp_messages_conflict",
    "Messages that reached a contradictory set",
    PROVIDER_PRODUCT,
)
UNKNOWN = Family(
    "unknown", "otp_callbacks_unknown", "Callbacks with an unknown status code", PROVIDER_PRODUCT
)
TRANSITIONS = Family(
    "transition",
    "otp_state_transitions",
    "Current-state changes",
    (*PROVIDER_PRODUCT, "from", "to"),
)
STARTED = Family(
    "started", "otp_messages_started", "Messages seen for the first time", PROVIDER_PRODUCT
)
MISMATCH = Family(
    "mismatch",
    "otp_callbacks_product_mismatch",
    "Callbacks naming another product than their message's (labelled by theirs): no effect",
    PROVIDER_PRODUCT,
)
REATTACHED = Family(
    "reattached",
    "otp_messages_reattached",
    "Messages back after their state expired, within the billing horizon (not billed again)",
    PROVIDER_PRODUCT,
)
BILLABLE = Family(
    "billable", "otp_messages_billable", "Messages that became billable", PROVIDER_PRODUCT
)
BILLABLE_REVERSED = Family(
    "billable_reversed",
    "otp_messages_billable_reversed",
    "Billable messages that became not billable",
    PROVIDER_PRODUCT,
)
LATENCIES = {
    stage: Family(
        f"lat_{stage}",
        f"otp_{stage}_latency_seconds",
        f"Time from requested/sent to {stage}",
        PROVIDER_PRODUCT,
        LATENCY_BUCKETS,
    )
    for stage in ("delivery", "read", "verify")
}
LAG = Family(
    "lag",
    "otp_processing_lag_seconds",
    "Time from a callback's receipt to its application",
    ("provider",),
    LAG_BUCKETS,
)
BATCH = Family(
    "batch",
    "otp_ingest_batch_size",
    "Callbacks per ingested batch (one RQ job)",
    (),
    BATCH_BUCKETS,
    sum_scale=1,
)

# Events out (issue 15). `endpoint` is the index of the URL in FORWARD_URL: a bounded label
# that names no host.
FORWARD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
FORWARD_RESULTS = ("ok", "http_4xx", "http_5xx", "timeout", "error")
FORWARD_ATTEMPTS = Family(
    "fwd_attempt",
    "otp_forward_attempts",
    "Deliveries of events to the application's endpoints tried, by result",
    ("endpoint", "result"),
)
FORWARD_LATENCY = Family(
    "fwd_latency",
    "otp_forward_latency_seconds",
    "Time an endpoint took to answer a delivery (or to fail it)",
    ("endpoint",),
    FORWARD_BUCKETS,
)
DELIVERY_TIMEOUTS = Family(
    "delivery_timeout",
    "otp_delivery_timeouts",
    "Messages with no delivery evidence nor final outcome within DELIVERY_TIMEOUT",
    PROVIDER_PRODUCT,
)

FAMILIES: tuple[Family, ...] = (
    RECEIVED,
    SEEN,
    REJECTED,
    DUPLICATE,
    LATE,
    CONFLICT,
    UNKNOWN,
    TRANSITIONS,
    STARTED,
    MISMATCH,
    REATTACHED,
    BILLABLE,
    BILLABLE_REVERSED,
    *LATENCIES.values(),
    LAG,
    BATCH,
    FORWARD_ATTEMPTS,
    FORWARD_LATENCY,
    DELIVERY_TIMEOUTS,
)
BY_KEY = {f.key: f for f in FAMILIES}
