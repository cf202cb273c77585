"""The pure state model: exhaustively over small sets, and as properties with hypothesis."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from workers import model
from workers.model import Outcome, Status

OTP = model.product("verihubs", "whatsapp-otp")
MSG = model.product("verihubs", "whatsapp-message")
ALL_SETS = [  # all 4096 subsets of the 12 statuses
    frozenset(c)
    for n in range(len(model.ORDER) + 1)
    for c in itertools.combinations(model.ORDER, n)
]


def replay(prod, statuses):
    seen, effects = None, []
    for s in statuses:
        seen, effect = model.apply(seen, prod, s)
        effects.append(effect)
    return seen, effects


def test_precedence_follows_the_design_table():
    precedence = {
        Status.REQUESTED: 1, Status.SENT: 2, Status.FAILED: 3, Status.REQUEST_ERROR: 3,
        Status.REJECTED: 3, Status.BLOCKED: 3, Status.TIER_LIMIT_EXCEEDED: 3,
        Status.INVALID_DATA: 3, Status.DELIVERED: 4, Status.READ: 5, Status.UNVERIFIED: 6,
        Status.VERIFIED: 7,
    }  # fmt: skip
    for a, b in itertools.combinations(model.ORDER, 2):
        assert precedence[a] <= precedence[b]


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
        assert all(s.bit <= state.bit for s in seen)


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
            elif seen and status.bit < model.current_state(seen).bit:
                assert outcome == Outcome.LATE
            else:
                assert outcome == Outcome.NEW
        assert model.classify(seen, None) == Outcome.UNKNOWN


def test_unknown_status_changes_nothing():
    seen, effect = model.apply(frozenset({Status.SENT}), OTP, None)
    assert seen == {Status.SENT}
    assert effect.transition is None and effect.billable_delta == 0


def test_requested_then_failed_is_reversed():
    _, effects = replay(OTP, [Status.REQUESTED, Status.FAILED])
    assert [e.billable_delta for e in effects] == [1, -1]
    assert [e.transition for e in effects] == [("none", "requested"), ("requested", "failed")]


callbacks = st.lists(st.sampled_from([*model.ORDER, None]), max_size=12)
products = st.sampled_from([OTP, MSG])


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


@given(products, callbacks, st.randoms())
def test_any_permutation_and_duplication_converges(prod, statuses, rnd):
    shuffled = statuses * 2
    rnd.shuffle(shuffled)
    seen_a, effects_a = replay(prod, statuses)
    seen_b, effects_b = replay(prod, shuffled)
    assert seen_a == seen_b
    assert model.current_state(seen_a or ()) == model.current_state(seen_b or ())
    assert converged(effects_a) == converged(effects_b)


@given(products, callbacks, st.randoms())
def test_a_permutation_counts_the_same_duplicates_and_unknowns(prod, statuses, rnd):
    shuffled = list(statuses)
    rnd.shuffle(shuffled)
    assert per_callback(replay(prod, statuses)[1]) == per_callback(replay(prod, shuffled)[1])


@given(products, callbacks)
def test_net_billable_matches_the_final_state(prod, statuses):
    seen, effects = replay(prod, statuses)
    assert sum(e.billable_delta for e in effects) == int(prod.is_billable(seen or ()))


@given(products, callbacks)
def test_transitions_chain_from_none_to_the_final_state(prod, statuses):
    seen, effects = replay(prod, statuses)
    chain = [e.transition for e in effects if e.transition]
    state = model.current_state(seen or ())
    if state is None:
        assert chain == []
    else:
        assert chain[0][0] == "none" and chain[-1][1] == state.value
        assert all(a[1] == b[0] for a, b in itertools.pairwise(chain))
