"""Every Redis key the tracker owns (RQ owns its own `rq:*` keys), and the fields of the
hashes behind them.

`workers/script.py` templates these names into `apply.lua` and `core/read.py` reads them
back, so the script that writes a hash and the code that reads it cannot drift apart.
Stored names are part of the data: renaming one orphans what Redis already holds.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from enum import StrEnum

DEFAULT_PREFIX = "otp"
# Billing counts in 15-minute UTC buckets, one hash per UTC day: `<billing>:<day>` holds
# `<quarter of the day>|<provider>|<product>`. Every real zone offset is a multiple of 15
# minutes, so a day in any IANA zone is a whole number of buckets.
QUARTER_MS = 15 * 60 * 1000
DAY_MS = 86_400_000
DAY_SCHEME, QUARTER_SCHEME = "d", "q"
# Billing records are fields of shared hashes, not a key each (a key costs ~150 bytes before
# its value; a field in a small listpack hash ~85 with it). A record is written in the
# generation of its last callback, `ms // RECORD_GENERATION_MS`, and each generation's hashes
# expire as one, BILLING_HORIZON after the generation ends: a record outlives its message's
# last callback by the horizon, and by at most one generation more.
RECORD_GENERATION_MS = 7 * DAY_MS
# Hashes per provider and generation unless BILLING_RECORD_SHARDS says otherwise: ~100
# records a hash (a listpack, scanned on lookup, up to hash-max-listpack-entries, 512 by
# default) for ~15,000 messages a day and provider.
DEFAULT_RECORD_SHARDS = 1024


@dataclass(frozen=True)
class Keys:
    """The keys of one deployment, all under its KEY_PREFIX: two deployments with their own
    prefixes (and queues) share one Redis without touching each other's data."""

    prefix: str = DEFAULT_PREFIX

    @property
    def counters(self) -> str:
        return f"{self.prefix}:counters"

    @property
    def billing(self) -> str:
        """Billable messages per UTC day, provider and product (`<day>|<provider>|<product>`):
        how billing was kept before 15-minute buckets. Still read, and still moved for the
        messages that were counted in it (their billing record's scheme is DAY_SCHEME)."""
        return f"{self.prefix}:billing"

    def message(self, provider: str, message_id: str) -> str:
        return f"{self.prefix}:m:{provider}:{message_id}"

    def billing_day(self, day: int) -> str:
        """The quarter-hour buckets of one UTC day (days since the epoch)."""
        return f"{self.billing}:{day}"

    def billing_record(self, provider: str, message_id: str) -> str:
        """A message's billing record as it was kept before `billing_records`: a key of its
        own. Still read (and moved to its generation's hash) by the apply script, so that
        records written before the change are honoured for their horizon."""
        return f"{self.prefix}:bill:{provider}:{message_id}"

    def billing_records(self, provider: str) -> str:
        """Billing records by generation (`RECORD_GENERATION_MS`): `<this>:<generation>` holds
        how many hashes the generation has (BILLING_RECORD_SHARDS at its first record), and
        `<this>:<generation>:<crc32(message id) % that>` the records, message id -> record.
        The apply script builds the names from `record_crc`, which the worker passes it."""
        return f"{self.prefix}:br:{provider}"

    def queued_events(self, queue_name: str) -> str:
        """Events waiting in a queue's jobs: the writer adds a job's events, the apply script
        takes them off when it starts the job, so the backlog is bounded in events."""
        return f"{self.prefix}:queued:{queue_name}"

    def index_prefix(self, provider: str) -> str:
        """The script appends `<product>:<state>` (`index`)."""
        return f"{self.prefix}:ix:{provider}:"

    def index(self, provider: str, product: str, state: str) -> str:
        """The search index: a sorted set per provider, product and current state, of message
        ids scored by the ms their first callback was received. The apply script moves a
        message between them in the step that changes its state, so a state filter never
        scans messages."""
        return f"{self.index_prefix(provider)}{product}:{state}"

    def applied(self, batch_id: str) -> str:
        """Bitmap of the events of one batch already applied: a replayed batch counts
        nothing."""
        return f"{self.prefix}:applied:{batch_id}"

    # Events out (issue 15) ---------------------------------------------------------------

    @property
    def outbox(self) -> str:
        """Stream of events for the application, appended by the apply step in the same
        atomic call that changes a message's state (a transactional outbox); bounded."""
        return f"{self.prefix}:outbox"

    @property
    def message_prefix(self) -> str:
        """What `message()` puts before `<provider>:<message id>` (the timer set's members)."""
        return f"{self.prefix}:m:"

    @property
    def timers(self) -> str:
        """Sorted set of delivery deadlines: `<provider>:<message id>` scored by the ms at
        which the message is overdue (`message.delivery_timeout`)."""
        return f"{self.prefix}:timers"

    @property
    def forward_endpoints(self) -> str:
        """Hash: endpoint index -> its consumer group, as the forwarder last configured it
        (the metrics collector reads the endpoints' backlogs through it)."""
        return f"{self.prefix}:fwd:endpoints"

    def forward_retry(self, group: str) -> str:
        """Sorted set: event ids waiting for their next attempt, scored by its ms."""
        return f"{self.prefix}:fwd:{group}:retry"

    def forward_held(self, group: str) -> str:
        """Hash: event id -> `<attempts>|<first attempt ms>|<body>` of the events in the
        retry and dead sets of one endpoint."""
        return f"{self.prefix}:fwd:{group}:held"

    def forward_dead(self, group: str) -> str:
        """Sorted set: event ids that exhausted their retries, scored by when; bounded,
        replayable."""
        return f"{self.prefix}:fwd:{group}:dead"


DEFAULT = Keys()


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
    # Callbacks refused because they named another product than the message's.
    MISMATCHES = "x"
    UNKNOWN_PREFIX = "u"
    # Distinct unknown codes stored (at most MAX_UNKNOWN_CODES), and those only counted.
    UNKNOWN_STORED = "k"
    UNKNOWN_DROPPED = "z"
    # Every accepted callback, in arrival order: a ring of MAX_HISTORY fields `h<n mod
    # MAX_HISTORY>` (`history_field`), the n-th callback in field n - 1; HISTORY_COUNT is n.
    # Entries past the last MAX_HISTORY are overwritten: dropped, and counted by the count.
    # One short field per entry keeps the hash in Redis's compact listpack encoding (a
    # value over hash-max-listpack-value, 64 bytes, would convert the whole hash).
    HISTORY_PREFIX = "h"
    HISTORY_COUNT = "n"
    # State-change events appended to the outbox for this message: each event's sequence.
    SEQUENCE = "q"


# A message keeps the first-seen time of this many distinct unknown codes; any further code
# is only counted, so a sender cycling through codes cannot grow a message without bound.
MAX_UNKNOWN_CODES = 16


# One history entry: `<outcome letter><code>,<received ms, base 36>,<received - provider ms>`
# then `,<status as sent>` where it says more than the code, and `,<product>` for a mismatch
# (the code is in that product's numbering). About 16 bytes a callback.
MAX_HISTORY = 32
HISTORY_PART_SEP = ","
HISTORY_OUTCOMES = {"new": "n", "late": "l", "duplicate": "d", "unknown": "u", "mismatch": "x"}


def status_field(bit: int) -> str:
    return str(bit)


def history_field(slot: int) -> str:
    return f"{MessageField.HISTORY_PREFIX}{slot}"


def unknown_field(code: int) -> str:
    return f"{MessageField.UNKNOWN_PREFIX}{code}"


@dataclass(frozen=True)
class BillingRecord:
    """The billing record's value: `<product>|<seen>|<flags>|<first ms>|<observed>|<scheme>`,
    written by apply.lua (the same order) and read here."""

    product: str
    seen: int
    flags: int
    first_ms: int
    observed: int
    scheme: str

    @classmethod
    def decode(cls, raw: bytes | str) -> BillingRecord:
        text = raw.decode() if isinstance(raw, bytes) else raw
        product, seen, flags, first, observed, scheme = text.split(RECORD_SEP)
        return cls(product, int(seen), int(flags), int(first), int(observed), scheme)

    def encode(self) -> str:
        parts = (self.product, self.seen, self.flags, self.first_ms, self.observed, self.scheme)
        return RECORD_SEP.join(str(p) for p in parts)


RECORD_SEP = "|"


def record_crc(message_id: str) -> int:
    """What picks a message's hash among its generation's (`Keys.billing_records`)."""
    return zlib.crc32(message_id.encode())
