"""The pure state model: exhaustively over small sets, and as properties with hypothesis."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from core import model, products
from core.model import BillingFlag, Message, Outcome, Status

OTP = products.product("verihubs", "whatsapp-otp")
MSG = products.product("verihubs", "whatsapp-message")
SMS = products.product("verihubs", "sms-otp")
META = products.product("meta", "whatsapp")
ALL_SETS = [  # all 16,384 subsets of the 14 statuses
    frozenset(c)
    for n in range(len(model.ORDER) + 1)
    for c in itertools.combinations(model.ORDER, n)
]


def replay(prod, statuses, flags=None):
    pairs = zip(statuses, flags or [BillingFlag.NONE] * len(statuses), strict=True)
    message, effects = run(prod, pairs)
    return message.seen, effects


def test_precedence_follows_the_design_table():
    precedence = {
        Status.REQUESTED: 1, Status.SENT: 2, Status.NO_DELIVERY_REPORT: 2.5, Status.FAILED: 3,
        Status.REQUEST_ERROR: 3, Status.REJECTED: 3, Status.UNDELIVERED: 3, Status.BLOCKED: 3,
        Status.TIER_LIMIT_EXCEEDED: 3, Status.INVALID_DATA: 3, Status.DELIVERED: 4,
        Status.READ: 5, Status.UNVERIFIED: 6, Status.VERIFIED: 7,
    }  # fmt: skip
    assert set(model.PRECEDENCE) == set(Status) == set(precedence)
    for a, b in itertools.combinations(model.PRECEDENCE, 2):
        assert precedence[a] <= precedence[b]


def test_failure_ties_go_to_the_highest_code_in_both_verihubs_numberings():
    whatsapp = products.product("verihubs", "whatsapp-message").codes
    for table in (whatsapp, products.VERIHUBS_SMS_CODES):
        failures = sorted((c, s) for c, s in table.items() if s in model.FAILURES)
        assert [s.rank for _, s in failures] == sorted(s.rank for _, s in failures)


def test_bits_of_stored_statuses_never_move():
    # Message hashes in Redis hold these bits: a new status may only be appended.
    assert [s.bit for s in Status][:12] == list(range(12))
    assert Status.VERIFIED.bit == 11 and Status.UNDELIVERED.bit == 12


def test_state_is_highest_precedence_and_failure_ties_go_to_highest_code():
    assert model.current_state({Status.SENT, Status.DELIVERED}) == Status.DELIVERED
    assert model.current_state({Status.BLOCKED, Status.FAILED}) == Status.BLOCKED
    assert model.current_state({Status.TIER_LIMIT_EXCEEDED, Status.INVALID_DATA}) == (
        Status.INVALID_DATA
    )
    assert model.current_state({Status.FAILED, Status.DELIVERED}) == Status.DELIVERED
    assert model.current_state(set()) is None


def test_every_set_has_a_state_in_the_set_with_nothing_above_it():
    for seen in ALL_SETS[1:]:
        state = model.current_state(seen)
        assert state in seen
        assert all(s.rank <= state.rank for s in seen)


def test_verihubs_code_tables():
    assert OTP.status(4) == Status.VERIFIED and OTP.status(5) == Status.UNVERIFIED
    assert OTP.status(11) is None  # OTP V2 uses codes 0-10
    assert MSG.status(4) is None and MSG.status(5) is None
    assert MSG.status(11) == Status.INVALID_DATA
    assert OTP.status(12) is None


def test_billing_follows_the_current_state():
    assert OTP.is_billable({Status.REQUESTED})
    assert not OTP.is_billable({Status.REQUESTED, Status.FAILED})
    assert OTP.is_billable({Status.REQUESTED, Status.FAILED, Status.DELIVERED})
    assert OTP.is_billable({Status.UNVERIFIED})
    assert not MSG.is_billable({Status.SENT, Status.BLOCKED})
    assert MSG.is_billable({Status.READ})


def test_conflicts():
    assert model.is_conflict(frozenset({Status.FAILED, Status.DELIVERED}))
    assert model.is_conflict(frozenset({Status.VERIFIED, Status.UNVERIFIED}))
    assert model.is_conflict(frozenset({Status.BLOCKED, Status.VERIFIED}))
    assert not model.is_conflict(frozenset({Status.FAILED, Status.UNVERIFIED}))
    assert not model.is_conflict(frozenset({Status.SENT, Status.READ}))


def test_classification_of_every_status_against_every_set():
    for seen in ALL_SETS:
        for status in model.ORDER:
            outcome = model.classify(seen, status)
            if status in seen:
                assert outcome == Outcome.DUPLICATE
            elif seen and status.rank < model.current_state(seen).rank:
                assert outcome == Outcome.LATE
            else:
                assert outcome == Outcome.NEW
        assert model.classify(seen, None) == Outcome.UNKNOWN


def test_unknown_status_changes_nothing():
    message, effect = model.apply(Message(frozenset({Status.SENT})), OTP, None)
    assert message.seen == {Status.SENT}
    assert effect.transition is None and effect.billable_delta == 0


def test_requested_then_failed_is_reversed():
    _, effects = replay(OTP, [Status.REQUESTED, Status.FAILED])
    assert [e.billable_delta for e in effects] == [1, -1]
    assert [e.transition for e in effects] == [("none", "requested"), ("requested", "failed")]


callbacks = st.lists(
    st.tuples(
        st.sampled_from([*model.ORDER, None]),
        st.sampled_from(
            [BillingFlag.NONE, BillingFlag.NONE, BillingFlag.NOT_BILLABLE, BillingFlag.BILLABLE]
        ),
    ),
    max_size=14,
)
all_products = st.sampled_from(list(products.PRODUCTS.values()))


def run(prod, pairs):
    message, effects = None, []
    for status, flag in pairs:
        message, effect = model.apply(message, prod, status, flag)
        effects.append(effect)
    return message or Message(), effects


def converged(effects):
    """What must not depend on order or repetition: distinct statuses, conflicts, billing."""
    return (
        sum(e.outcome in (Outcome.NEW, Outcome.LATE) for e in effects),
        sum(e.conflict for e in effects),
        sum(e.billable_delta for e in effects),
        sum(e.started for e in effects),
    )


def per_callback(effects):
    kinds = [e.outcome for e in effects]
    return kinds.count(Outcome.DUPLICATE), kinds.count(Outcome.UNKNOWN)


@given(all_products, callbacks, st.randoms())
def test_any_permutation_and_duplication_converges(prod, pairs, rnd):
    shuffled = pairs * 2
    rnd.shuffle(shuffled)
    message_a, effects_a = run(prod, pairs)
    message_b, effects_b = run(prod, shuffled)
    assert message_a == message_b
    assert model.current_state(message_a.seen) == model.current_state(message_b.seen)
    assert converged(effects_a) == converged(effects_b)


@given(all_products, callbacks, st.randoms())
def test_a_permutation_counts_the_same_duplicates_and_unknowns(prod, pairs, rnd):
    shuffled = list(pairs)
    rnd.shuffle(shuffled)
    assert per_callback(run(prod, pairs)[1]) == per_callback(run(prod, shuffled)[1])


@given(all_products, callbacks)
def test_net_billable_matches_the_final_state(prod, pairs):
    message, effects = run(prod, pairs)
    assert sum(e.billable_delta for e in effects) == int(
        prod.is_billable(message.seen, message.flags)
    )


@given(all_products, callbacks)
def test_transitions_chain_from_none_to_the_final_state(prod, pairs):
    message, effects = run(prod, pairs)
    chain = [e.transition for e in effects if e.transition]
    state = model.current_state(message.seen)
    if state is None:
        assert chain == []
    else:
        assert chain[0][0] == "none" and chain[-1][1] == state.value
        assert all(a[1] == b[0] for a, b in itertools.pairwise(chain))


def test_sms_otp_codes_and_billing():
    assert SMS.status(1) == Status.DELIVERED and SMS.status(7) == Status.UNDELIVERED
    assert SMS.status(8) == Status.NO_DELIVERY_REPORT and SMS.status(10) is None
    assert not SMS.is_billable({Status.REQUESTED})
    assert SMS.is_billable({Status.REQUESTED, Status.UNDELIVERED})
    assert SMS.is_billable({Status.REQUESTED, Status.NO_DELIVERY_REPORT})
    assert not SMS.is_billable({Status.REQUESTED, Status.NO_DELIVERY_REPORT, Status.FAILED})
    assert SMS.is_billable({Status.FAILED, Status.UNVERIFIED})
    assert model.is_conflict(frozenset({Status.UNDELIVERED, Status.DELIVERED}))


def test_a_providers_billing_flag_decides_where_present():
    assert not META.is_billable({Status.SENT})
    assert META.is_billable({Status.DELIVERED})
    assert not META.is_billable({Status.DELIVERED}, BillingFlag.NOT_BILLABLE)
    assert META.is_billable({Status.DELIVERED}, BillingFlag.NOT_BILLABLE | BillingFlag.BILLABLE)
    assert META.is_billable({Status.SENT, Status.READ}, BillingFlag.BILLABLE)
    # Meta charges a template message once it is delivered: its flag on `sent` is a forecast,
    # so a message only sent, or sent and then failed, is free.
    assert not META.is_billable({Status.SENT}, BillingFlag.BILLABLE)
    assert not META.is_billable({Status.SENT, Status.FAILED}, BillingFlag.BILLABLE)
    _, effects = replay(
        META, [Status.SENT, Status.DELIVERED], flags=[BillingFlag.BILLABLE, BillingFlag.BILLABLE]
    )
    assert [e.billable_delta for e in effects] == [0, 1]
    # A free delivered message (free_customer_service: not billable) stays free.
    _, effects = replay(
        META, [Status.SENT, Status.DELIVERED], flags=[BillingFlag.NONE, BillingFlag.NOT_BILLABLE]
    )
    assert [e.billable_delta for e in effects] == [0, 0]
