"""The canonical state model: pure code over enums, no I/O.

A message's current state is a function of the SET of statuses seen, never of their order,
so duplicated, delayed and reordered callbacks, retried jobs and concurrent workers all
converge on the same answer. `apply.lua` implements the same rules inside Redis; the tests
hold the two together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntFlag, StrEnum


class Status(StrEnum):
    """Canonical statuses.

    The declaration order is each status's bit in the Redis-held set, so it is append-only:
    messages already stored keep their meaning. Precedence is `PRECEDENCE` below.
    """

    REQUESTED = "requested"
    SENT = "sent"
    FAILED = "failed"
    REQUEST_ERROR = "request_error"
    REJECTED = "rejected"
    BLOCKED = "blocked"
    TIER_LIMIT_EXCEEDED = "tier_limit_exceeded"
    INVALID_DATA = "invalid_data"
    DELIVERED = "delivered"
    READ = "read"
    UNVERIFIED = "unverified"
    VERIFIED = "verified"
    # SMS: the carrier reported the message undelivered; or no delivery report ever came.
    UNDELIVERED = "undelivered"
    NO_DELIVERY_REPORT = "no_delivery_report"

    @property
    def bit(self) -> int:
        return ORDER.index(self)

    @property
    def rank(self) -> int:
        return PRECEDENCE.index(self)


class Kind(StrEnum):
    PROGRESS = "progress"
    FAILURE = "failure"
    OUTCOME = "outcome"


class BillingFlag(IntFlag):
    """The billing flags a provider sent for a message (Meta's `pricing.billable`), as a set.

    The values are the bits stored in the message hash: append-only.
    """

    NONE = 0
    NOT_BILLABLE = 1
    BILLABLE = 2

    @classmethod
    def from_wire(cls, billable: int) -> BillingFlag:
        """An Event's `billable` (-1 none sent, 0 not billable, 1 billable) as a flag."""
        if billable < 0:
            return cls.NONE
        return cls.BILLABLE if billable else cls.NOT_BILLABLE


class Outcome(StrEnum):
    """How one callback was classified when it was applied."""

    NEW = "new"
    LATE = "late"
    DUPLICATE = "duplicate"
    UNKNOWN = "unknown"
    # The callback names another product than the message's: it changes nothing.
    MISMATCH = "mismatch"


ORDER: tuple[Status, ...] = tuple(Status)
# Lowest first. Failures share one precedence level; among them the order is one total order
# that keeps both Verihubs numberings' "highest code wins" (WhatsApp 6-11, SMS 4-7 and 9).
# A missing delivery report says less than any failure, and more than "sent".
PRECEDENCE: tuple[Status, ...] = (
    Status.REQUESTED,
    Status.SENT,
    Status.NO_DELIVERY_REPORT,
    Status.FAILED,
    Status.REQUEST_ERROR,
    Status.REJECTED,
    Status.UNDELIVERED,
    Status.BLOCKED,
    Status.TIER_LIMIT_EXCEEDED,
    Status.INVALID_DATA,
    Status.DELIVERED,
    Status.READ,
    Status.UNVERIFIED,
    Status.VERIFIED,
)
NO_STATE = "none"

FAILURES = frozenset(
    {
        Status.FAILED,
        Status.REQUEST_ERROR,
        Status.REJECTED,
        Status.BLOCKED,
        Status.TIER_LIMIT_EXCEEDED,
        Status.INVALID_DATA,
        Status.UNDELIVERED,
    }
)
# A verified OTP proves the code arrived, so it is delivery evidence too.
DELIVERY_EVIDENCE = frozenset({Status.DELIVERED, Status.READ, Status.VERIFIED})
OUTCOMES = frozenset({Status.UNVERIFIED, Status.VERIFIED})
LATENCY_STARTS = frozenset({Status.REQUESTED, Status.SENT})
# Latency stage name -> the status that ends it.
LATENCY_ENDS: Mapping[str, Status] = {
    "delivery": Status.DELIVERED,
    "read": Status.READ,
    "verify": Status.VERIFIED,
}


def kind(status: Status) -> Kind:
    if status in FAILURES:
        return Kind.FAILURE
    return Kind.OUTCOME if status in OUTCOMES else Kind.PROGRESS


def current_state(seen: Iterable[Status]) -> Status | None:
    return max(seen, key=PRECEDENCE.index, default=None)


def is_conflict(seen: frozenset[Status]) -> bool:
    failed_and_delivered = bool(seen & FAILURES) and bool(seen & DELIVERY_EVIDENCE)
    return failed_and_delivered or seen >= OUTCOMES


def mask(statuses: Iterable[Status]) -> int:
    return sum(1 << s.bit for s in set(statuses))


def from_mask(bits: int) -> frozenset[Status]:
    return frozenset(s for s in ORDER if bits >> s.bit & 1)


@dataclass(frozen=True)
class Product:
    """One provider product: its status codes and what the provider charges for."""

    provider: str
    name: str
    codes: Mapping[int, Status]
    charged: frozenset[Status]

    def status(self, code: int) -> Status | None:
        return self.codes.get(code)

    def is_billable(self, seen: Iterable[Status], flags: BillingFlag = BillingFlag.NONE) -> bool:
        """Billed while the current state is a status the product charges. Where the provider
        sends its own per-message flag (Meta's pricing), a charged message is billed only if
        some callback said billable: Meta charges a template message once it is delivered,
        and its flag on `sent` is a forecast, so the state must be charged as well."""
        if current_state(seen) not in self.charged:
            return False
        return not flags or BillingFlag.BILLABLE in flags


@dataclass(frozen=True)
class Message:
    """What is kept of a message: its product (that of its first callback), the set of
    statuses and the set of billing flags seen."""

    seen: frozenset[Status] = frozenset()
    flags: BillingFlag = BillingFlag.NONE
    product: str | None = None


@dataclass(frozen=True)
class Effect:
    """What applying one callback did: everything the counters need."""

    outcome: Outcome
    started: bool
    before: Status | None
    after: Status | None
    conflict: bool
    billable_delta: int

    @property
    def transition(self) -> tuple[str, str] | None:
        if self.before == self.after:
            return None
        return (self.before or NO_STATE, self.after or NO_STATE)


def classify(seen: frozenset[Status], status: Status | None) -> Outcome:
    if status is None:
        return Outcome.UNKNOWN
    if status in seen:
        return Outcome.DUPLICATE
    state = current_state(seen)
    if state is not None and status.rank < state.rank:
        return Outcome.LATE
    return Outcome.NEW


def apply(
    message: Message | None,
    prod: Product,
    status: Status | None,
    flag: BillingFlag = BillingFlag.NONE,
) -> tuple[Message, Effect]:
    """Apply one callback (None: the message is not known yet). Both sets only grow, so any
    order and any repetition of the same callbacks ends in the same Message.

    The first callback fixes the message's product; a callback of another product (a
    misconfigured callback URL: its code is in another numbering) changes nothing at all.
    """
    if message is not None and message.product not in (None, prod.name):
        state = current_state(message.seen)
        return message, Effect(Outcome.MISMATCH, False, state, state, False, 0)
    before = message or Message()
    after = Message(
        before.seen if status is None else before.seen | {status},
        before.flags | flag,
        prod.name,
    )
    effect = Effect(
        outcome=classify(before.seen, status),
        started=message is None,
        before=current_state(before.seen),
        after=current_state(after.seen),
        conflict=is_conflict(after.seen) and not is_conflict(before.seen),
        billable_delta=int(prod.is_billable(after.seen, after.flags))
        - int(prod.is_billable(before.seen, before.flags)),
    )
    return after, effect
