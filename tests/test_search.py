"""Search: the messages still tracked, filtered from an index the apply step keeps current."""

from __future__ import annotations

import pytest

from core import keys
from core.clock import now_ms
from core.events import Event
from core.read import STATES
from tests.support import ADMIN, CALLBACK_TOKEN, run_jobs
from workers.store import Store

T = now_ms() - 3_600_000


def vh(mid: str, code: int, received: int, product: str = "whatsapp-otp") -> Event:
    return Event("verihubs", product, mid, code, received, received)


def ids(page) -> list[str]:
    return [m.message_id for m in page.messages]


def test_a_message_moves_between_state_sets_in_the_step_that_changes_it(store, reader, redis):
    store.apply("b1", [vh("a", 1, T)])
    assert ids(reader.search(states=["sent"])) == ["a"]
    store.apply("b2", [vh("a", 6, T + 5)])  # failed
    assert ids(reader.search(states=["sent"])) == []
    assert ids(reader.search(states=["failed"])) == ["a"]
    index = keys.DEFAULT.index("verihubs", "whatsapp-otp", "failed")
    assert redis.zscore(index, "a") == T  # its first callback's receipt, not the last one's
    store.apply("b3", [vh("a", 1, T - 10)])  # an older copy, applied late: earlier receipt
    assert redis.zscore(index, "a") == T - 10
    assert sum(redis.zcard(k) for k in redis.scan_iter("otp:ix:*")) == 1


def test_filters_newest_first_and_time_window(store, reader):
    store.apply(
        "b",
        [
            vh("old", 2, T),
            vh("mid", 6, T + 1000, "whatsapp-message"),
            vh("new", 2, T + 2000),
            Event("meta", "whatsapp", "w", 2, T + 3000, T + 3000, 1, "delivered"),
        ],
    )
    assert ids(reader.search()) == ["w", "new", "mid", "old"]
    assert ids(reader.search(providers=["verihubs"], states=["delivered"])) == ["new", "old"]
    assert ids(reader.search(products=["whatsapp-message"])) == ["mid"]
    assert ids(reader.search(since_ms=T + 1000, until_ms=T + 3000)) == ["new", "mid"]
    summary = reader.search(providers=["meta"]).messages[0]
    assert (summary.state, summary.billable, summary.product) == ("delivered", True, "whatsapp")


def test_pages_resume_exactly_through_ties(store, reader):
    # 25 messages received in the same millisecond, 10 more after: ties need the cursor's
    # id as well as its time.
    events = [vh(f"t{i:02}", 1, T) for i in range(25)] + [
        vh(f"u{i}", 1, T + i + 1) for i in range(10)
    ]
    store.apply("b", events)
    seen, cursor = [], None
    while True:
        page = reader.search(limit=7, cursor=cursor)
        seen += ids(page)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"u{i}" for i in reversed(range(10))] + [
        f"t{i:02}" for i in reversed(range(25))
    ]


def test_a_message_whose_state_expired_is_left_out_and_sets_are_trimmed(redis, reader, settings):
    store = Store(redis, 60, 60, settings.billing_horizon, settings.queue_name)
    now = now_ms()
    store.apply("b1", [vh("gone", 2, now - 120_000), vh("kept", 2, now)])
    # The older one was first received longer ago than the state lives: trimmed at once.
    assert ids(reader.search()) == ["kept"]
    redis.delete(keys.DEFAULT.message("verihubs", "kept"))  # as its TTL would
    assert ids(reader.search()) == []


def test_state_counts_and_find(store, reader):
    store.apply("b", [vh("x", 2, T), vh("y", 6, T + 1), vh("z", 2, T + 2)])
    store.apply("c", [Event("twilio", "sms", "x", 1, T, T, -1, "sent")])
    counts = reader.state_counts(T, T + 2)
    assert counts == {
        ("verihubs", "whatsapp-otp", "delivered"): 1,
        ("verihubs", "whatsapp-otp", "failed"): 1,
        ("twilio", "sms", "sent"): 1,
    }
    assert sorted(v.provider for v in reader.find("x")) == ["twilio", "verihubs"]
    assert reader.find("nothing") == []


# The HTTP API -------------------------------------------------------------------------------


def test_search_api(app_client, redis, settings):
    client = app_client()
    url = f"/callbacks/verihubs/whatsapp-otp/{CALLBACK_TOKEN}"
    for session, status in (("s1", "2"), ("s2", "6"), ("s3", "6")):
        client.get(url, params={"session_id": session, "status": status})
    run_jobs(redis, settings)
    assert client.get("/messages").status_code == 401
    body = client.get("/messages", params={"state": "failed", "since": "1h"}, headers=ADMIN).json()
    assert [m["message_id"] for m in body["messages"]] == ["s3", "s2"]
    assert body["next_cursor"] is None
    first = client.get("/messages", params={"limit": "2"}, headers=ADMIN).json()
    rest = client.get("/messages", params={"cursor": first["next_cursor"]}, headers=ADMIN).json()
    assert len(first["messages"]) == 2 and len(rest["messages"]) == 1
    assert set(first["messages"][0]) == {
        "provider",
        "message_id",
        "product",
        "state",
        "billable",
        "first_received",
    }


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"state": "lost"}, "unknown state 'lost'"),
        ({"state": "failed,<b>"}, "unknown state '<b>'"),
        ({"provider": "sinch"}, "unknown provider"),
        ({"product": "voice"}, "unknown product"),
        ({"since": "yesterday"}, "since: 'yesterday' is neither a duration"),
        ({"since": "2026-11-01T00:00:00"}, "has no UTC offset"),
        ({"since": "99999d"}, "more than 400 days back"),
        ({"since": "1h", "until": "2h"}, "since must be before until"),
        ({"limit": "0"}, "limit must be an integer from 1 to 500"),
        ({"limit": "501"}, "limit must be"),
        ({"limit": "\uff11\uff10"}, "limit must be"),  # full-width digits
        ({"cursor": "not-a-cursor!"}, "cursor is not one this API returned"),
        ({"cursor": "x" * 401}, "cursor is not one"),
    ],
)
def test_bad_search_parameters_are_refused_clearly(app_client, params, says):
    client = app_client()
    response = client.get("/messages", params=params, headers=ADMIN)
    assert response.status_code == 400, response.text
    assert says in response.json()["error"]
    assert set(response.json()) == {"error"}


def test_every_state_is_a_filter(app_client):
    client = app_client()
    for state in STATES:
        assert client.get("/messages", params={"state": state}, headers=ADMIN).status_code == 200
