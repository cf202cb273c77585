"""Hypothesis strategies shared by the Lua-vs-model and outbox properties: callbacks of the
reference's few messages, in any order."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.reference import PRODUCTS, UNKNOWN_CODE, event

SLOW = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _callbacks(intruders: bool) -> st.SearchStrategy:
    return st.lists(
        st.builds(
            event,
            st.sampled_from(sorted(PRODUCTS)),
            st.sampled_from([*range(14), UNKNOWN_CODE]),
            st.sampled_from([-1, -1, 0, 1]),
            st.sampled_from([False] * 5 + [True]) if intruders else st.just(False),
        ),
        max_size=25,
    )


callbacks = _callbacks(intruders=False)
# Some callbacks name another product than their message's (a wrong callback URL).
with_intruders = _callbacks(intruders=True)
