"""Every accepted callback of a message is kept with it, bounded, and shown as it arrived."""

from __future__ import annotations

from core import keys
from core.clock import iso, now_ms
from core.events import Event
from tests.support import ADMIN, CALLBACK_TOKEN, message, run_jobs


def telnyx(code: int, at: int, received: int, raw: str, product: str = "sms") -> Event:
    return Event("telnyx", product, "v-1", code, at, received, -1, raw)


def test_history_keeps_each_callback_as_sent_and_how_it_was_classified(store, reader):
    t = now_ms() - 60_000
    store.apply(
        "b1",
        [
            telnyx(2, t + 5_000, t + 5_400, "verify.delivered"),
            telnyx(1, t, t + 9_100, "verify.sent"),  # late: below the current state
            telnyx(12, t + 9_000, t + 9_200, "verify.failed:delivery_failed"),
            telnyx(1, t, t + 20_000, "verify.sent"),  # the provider's retry
            telnyx(-1, t + 21_000, t + 21_000, "verify.unheard_of"),
            telnyx(2, t + 5_000, t + 31_000, "verify.delivered", product="whatsapp"),
        ],
    )
    view = reader.message("telnyx", "v-1")
    got = [(h.outcome, h.provider_status, h.status, h.product) for h in view.history]
    assert got == [
        ("new", "verify.delivered", "delivered", "sms"),
        ("late", "verify.sent", "sent", "sms"),
        ("late", "verify.failed:delivery_failed", "undelivered", "sms"),  # evidence outranks
        ("duplicate", "verify.sent", "sent", "sms"),
        ("unknown", "verify.unheard_of", None, "sms"),
        ("mismatch", "verify.delivered", None, "whatsapp"),
    ]
    assert (view.history[0].at, view.history[0].received) == (iso(t + 5_000), iso(t + 5_400))
    assert view.history[1].at == iso(t)
    assert view.history_dropped == 0


def test_verihubs_history_shows_its_numeric_codes_and_meta_its_names(store, reader):
    t = now_ms()
    store.apply(
        "b1",
        [
            Event("verihubs", "sms-otp", "s-1", 0, t, t),
            Event("verihubs", "sms-otp", "s-1", 1, t + 1, t + 1),
            Event("meta", "whatsapp", "wamid.1", 3, t, t + 2, 1, "played"),
            Event("meta", "whatsapp", "wamid.1", 2, t, t + 3, 1, "delivered"),
        ],
    )
    verihubs = reader.message("verihubs", "s-1").history
    assert [(h.code, h.provider_status, h.status) for h in verihubs] == [
        (0, "0", "requested"),
        (1, "1", "delivered"),
    ]
    meta = reader.message("meta", "wamid.1").history
    assert [(h.provider_status, h.status, h.outcome) for h in meta] == [
        ("played", "read", "new"),
        ("delivered", "delivered", "late"),
    ]


def test_history_is_bounded_dropping_the_oldest_and_counting_them(store, reader, redis):
    t = now_ms()
    extra = 7
    copies = [Event("verihubs", "sms-otp", "s-2", 0, t, t + i) for i in range(keys.MAX_HISTORY)]
    copies += [Event("verihubs", "sms-otp", "s-2", 1, t, t + 1000 + i) for i in range(extra)]
    for i, e in enumerate(copies):
        store.apply(f"b{i}", [e])
    view = reader.message("verihubs", "s-2")
    assert len(view.history) == keys.MAX_HISTORY
    assert view.history_dropped == extra
    assert view.history[0].received == iso(t + extra)  # the 8th callback is now the oldest
    assert view.history[-1].received == iso(t + 1000 + extra - 1)
    # Compact: the hash keeps Redis's listpack encoding with a full history.
    assert redis.object("encoding", keys.DEFAULT.message("verihubs", "s-2")) == b"listpack"


def test_a_replayed_batch_adds_nothing_to_the_history(store, reader):
    t = now_ms()
    batch = [
        Event("verihubs", "sms-otp", "s-3", 0, t, t),
        Event("verihubs", "sms-otp", "s-3", 1, t, t),
    ]
    store.apply("same", batch)
    store.apply("same", batch)
    assert len(reader.message("verihubs", "s-3").history) == 2


def test_the_admin_api_shows_the_history_of_real_callbacks(app_client, redis, settings):
    client = app_client()
    url = f"/callbacks/verihubs/whatsapp-otp/{CALLBACK_TOKEN}"
    for status in ("1", "2", "2"):
        assert client.get(url, params={"session_id": "sess-9", "status": status}).status_code == 200
    run_jobs(redis, settings)
    body = message(client, "verihubs", "sess-9")
    assert [(h["outcome"], h["status"]) for h in body["history"]] == [
        ("new", "sent"),
        ("new", "delivered"),
        ("duplicate", "delivered"),
    ]
    assert body["history_dropped"] == 0
    assert client.get("/messages/verihubs/sess-9").status_code == 401
    assert client.get("/messages/verihubs/sess-9", headers=ADMIN).status_code == 200
