"""The canonical state model: pure code over enums, no I/O.

A message's current state is a function of the SET of statuses seen, never of their order,
so duplicated, delayed and reordered callbacks, retried jobs and concurrent workers all
converge on the same answer. `apply.lua` implements the same rules inside Redis; the tests
hold the two together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache


class Status(StrEnum):
    """Canonical statuses, declared in precedence order (lowest first).

    The declaration order is also each status's bit in the Redis-held set: failures share a
    precedence and are declared by ascending Verihubs code, so "ties among failures go to the
    highest code" is simply "the highest bit wins".
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

    @property
    def bit(self) -> int:
        return ORDER.index(self)


class Kind(StrEnum):
    PROGRESS = "progress"
    FAILURE = "failure"
    OUTCOME = "outcome"


class Outcome(StrEnum):
    """How one callback was classified when it was applied."""

    NEW = "new"
    LATE = "late"
    DUPLICATE = "duplicate"
    UNKNOWN = "unknown"


ORDER: tuple[Status, ...] = tuple(Status)
NO_STATE = "none"

FAILURES = frozenset(
    {
        Status.FAILED,
        Status.REQUEST_ERROR,
        Status.REJECTED,
        Status.BLOCKED,
        Status.TIER_LIMIT_EXCEEDED,
        Status.INVALID_DATA,
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
    return max(seen, key=ORDER.index, default=None)


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

    def is_billable(self, seen: Iterable[Status]) -> bool:
        return current_state(seen) in self.charged


VERIHUBS_WHATSAPP_CODES: Mapping[int, Status] = {
    0: Status.REQUESTED,
    1: Status.SENT,
    2: Status.DELIVERED,
    3: Status.READ,
    4: Status.VERIFIED,
    5: Status.UNVERIFIED,
    6: Status.FAILED,
    7: Status.REQUEST_ERROR,
    8: Status.REJECTED,
    9: Status.BLOCKED,
    10: Status.TIER_LIMIT_EXCEEDED,
    11: Status.INVALID_DATA,
}


def _subset(codes: Iterable[int]) -> dict[int, Status]:
    return {c: VERIHUBS_WHATSAPP_CODES[c] for c in codes}


def _charged(codes: Iterable[int]) -> frozenset[Status]:
    return frozenset(VERIHUBS_WHATSAPP_CODES[c] for c in codes)


PRODUCTS: Mapping[tuple[str, str], Product] = {
    ("verihubs", "whatsapp-otp"): Product(
        "verihubs", "whatsapp-otp", _subset(range(11)), _charged(range(6))
    ),
    ("verihubs", "whatsapp-message"): Product(
        "verihubs",
        "whatsapp-message",
        _subset([0, 1, 2, 3, 6, 7, 8, 9, 10, 11]),
        _charged(range(4)),
    ),
}


def product(provider: str, name: str) -> Product | None:
    return PRODUCTS.get((provider, name))


@cache
def status_bit(provider: str, name: str, code: int) -> int:
    """The status's bit for the Lua script; -1 for a code the product does not know."""
    prod = product(provider, name)
    status = prod.status(code) if prod else None
    return -1 if status is None else status.bit


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
    if state is not None and status.bit < state.bit:
        return Outcome.LATE
    return Outcome.NEW


def apply(
    seen: frozenset[Status] | None, prod: Product, status: Status | None
) -> tuple[frozenset[Status], Effect]:
    """Apply one callback to a message's seen set (None: the message is not known yet)."""
    before = frozenset() if seen is None else seen
    after = before if status is None else before | {status}
    effect = Effect(
        outcome=classify(before, status),
        started=seen is None,
        before=current_state(before),
        after=current_state(after),
        conflict=is_conflict(after) and not is_conflict(before),
        billable_delta=int(prod.is_billable(after)) - int(prod.is_billable(before)),
    )
    return after, effect
