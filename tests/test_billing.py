"""Billing that matches the invoice: one product per message, billed once per real life
whatever arrives after its state expired, and days of any time zone, against a real Redis."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from redis.exceptions import ResponseError

from core import keys, products
from core.clock import now_ms
from core.events import Event
from tests.support import ADMIN, CALLBACK_TOKEN, billing_records, message, metric, run_jobs
from workers import store as store_module
from workers.store import Store

OTP, SMS = "whatsapp-otp", "sms-otp"
JAKARTA, NEW_YORK = ZoneInfo("Asia/Jakarta"), ZoneInfo("America/New_York")


def at(text: str) -> int:
    """Epoch ms of an ISO time with its zone."""
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def verihubs(session: str, code: int, ms: int, product: str = OTP) -> Event:
    return Event("verihubs", product, session, code, ms, ms)


def net_billable(reader) -> int:
    values = reader.counters()
    billed = sum(v for k, v in values.items() if k.startswith("billable|"))
    return billed - sum(v for k, v in values.items() if k.startswith("billable_reversed|"))


def billed(reader, start: date, end: date, zone=UTC) -> dict[tuple[str, str, str], int]:
    return {
        (r.day.isoformat(), r.provider, r.product): r.billable
        for r in reader.billing(start, end, zone)
    }


ALL_TIME = (date(1970, 1, 1), date(2100, 1, 1))
T0 = at("2026-11-20T10:00:00+00:00")


# 1. One product per message -----------------------------------------------------------------


def test_a_callback_on_another_products_url_changes_nothing(app_client, redis, settings):
    client = app_client()
    session = "3f1c0e9a-1d2b-4c5e-8f70-1234567890ab"
    base = "/callbacks/verihubs/{}/" + CALLBACK_TOKEN
    assert (
        client.get(base.format(OTP), params={"session_id": session, "status": "1"}).status_code
        == 200
    )
    run_jobs(redis, settings)
    before = message(client, "verihubs", session)
    assert (before["state"], before["billable"]) == ("sent", True)
    # SMS OTP's 4 is "failed"; WhatsApp OTP's 4 would be "verified". Neither may apply.
    answer = client.get(base.format(SMS), params={"session_id": session, "status": "4"})
    assert answer.status_code == 200
    run_jobs(redis, settings)
    after = message(client, "verihubs", session)
    assert (after["product"], after["state"], after["billable"]) == (OTP, "sent", True)
    assert after["statuses"] == before["statuses"]
    assert after["anomalies"] == {"product_mismatch": 1}
    assert (
        metric(client, "otp_callbacks_product_mismatch_total", provider="verihubs", product=SMS)
        == 1
    )
    assert metric(client, "otp_callbacks_received_total", product=SMS, status="mismatch") == 1
    assert metric(client, "otp_messages_billable_reversed_total") == 0
    rows = client.get("/billing", params={"from": "2026-01-01"}, headers=ADMIN).json()["days"]
    assert [(r["product"], r["billable"]) for r in rows] == [(OTP, 1)]


def test_the_first_callback_fixes_the_product(store, reader):
    store.apply("b1", [verihubs("s", 0, T0, SMS)])
    outcomes = store.apply(
        "b2", [verihubs("s", 1, T0 + 1000, OTP), verihubs("s", 1, T0 + 2000, SMS)]
    )
    assert [o.value for o in outcomes] == ["mismatch", "new"]
    view = reader.message("verihubs", "s")
    assert (view.product, view.state) == (SMS, "delivered")  # SMS OTP's 1 is delivered


# 2. Billed once per real life ---------------------------------------------------------------


@pytest.fixture
def short_lived(redis, settings) -> Store:
    """Message state that expires after one second; billing records as configured."""
    return Store(redis, 1, settings.failed_job_ttl, settings.billing_horizon, settings.queue_name)


def expire(redis, session: str) -> None:
    """Wait until the message's state has really expired in Redis."""
    deadline = time.monotonic() + 5
    while redis.exists(keys.DEFAULT.message("verihubs", session)):
        assert time.monotonic() < deadline, "state did not expire"
        time.sleep(0.1)


def test_a_replay_after_expiry_re_attaches_and_is_not_billed_again(redis, short_lived, reader):
    short_lived.apply("b1", [verihubs("s", 0, T0), verihubs("s", 1, T0 + 1000)])
    assert billed(reader, *ALL_TIME) == {("2026-11-20", "verihubs", OTP): 1}
    expire(redis, "s")
    ((record, _),) = billing_records(redis, "verihubs", "s")
    assert redis.pttl(record) > 30 * 86_400_000
    # A provider's late retry of "sent", then a new "delivered", days later.
    later = T0 + 3 * 86_400_000
    short_lived.apply("b2", [verihubs("s", 1, later), verihubs("s", 2, later + 1000)])
    assert billed(reader, *ALL_TIME) == {("2026-11-20", "verihubs", OTP): 1}
    values = reader.counters()
    assert values["started|verihubs|whatsapp-otp"] == 1
    assert values["reattached|verihubs|whatsapp-otp"] == 1
    assert values["billable|verihubs|whatsapp-otp"] == 1
    assert net_billable(reader) == 1
    view = reader.message("verihubs", "s")
    assert view.state == "delivered"
    assert view.first_seen == "2026-11-20T10:00:00.000+00:00"
    # "requested" is known from the billing record only: its time expired with the state.
    assert [(s.status, s.first_seen is None) for s in view.statuses] == [
        ("requested", True),
        ("sent", False),
        ("delivered", False),
    ]


def test_a_failure_after_expiry_still_reverses_billing(redis, short_lived, reader):
    short_lived.apply("b1", [verihubs("s", 0, T0)])
    assert billed(reader, *ALL_TIME) == {("2026-11-20", "verihubs", OTP): 1}
    expire(redis, "s")
    short_lived.apply("b2", [verihubs("s", 6, T0 + 86_400_000)])  # failed
    assert billed(reader, *ALL_TIME) == {}
    assert reader.counters()["billable_reversed|verihubs|whatsapp-otp"] == 1
    assert net_billable(reader) == 0


def test_a_mismatch_after_expiry_is_still_a_mismatch(redis, short_lived, reader):
    short_lived.apply("b1", [verihubs("s", 1, T0)])
    expire(redis, "s")
    assert short_lived.apply("b2", [verihubs("s", 4, T0 + 1000, SMS)])[0].value == "mismatch"
    assert not redis.exists(keys.DEFAULT.message("verihubs", "s"))
    assert billed(reader, *ALL_TIME) == {("2026-11-20", "verihubs", OTP): 1}


def test_past_the_horizon_a_message_starts_anew(redis, store, reader):
    store.apply("b1", [verihubs("s", 1, T0)])
    ((record, _),) = billing_records(redis, "verihubs", "s")
    redis.delete(keys.DEFAULT.message("verihubs", "s"), record)  # as the horizon would
    store.apply("b2", [verihubs("s", 1, T0 + 40 * 86_400_000)])
    assert billed(reader, *ALL_TIME) == {
        ("2026-11-20", "verihubs", OTP): 1,
        ("2026-12-30", "verihubs", OTP): 1,
    }


def test_the_billing_horizon_is_never_shorter_than_the_state_or_believed_times(redis_server):
    from tests.support import make_settings

    with pytest.raises(ValueError, match="BILLING_HORIZON"):
        make_settings(redis_server.url, BILLING_HORIZON=str(29 * 86_400))
    with pytest.raises(ValueError, match="BILLING_HORIZON"):
        make_settings(redis_server.url, MESSAGE_TTL=str(40 * 86_400))
    assert make_settings(redis_server.url).billing_horizon == 35 * 86_400


# Billing records: fields of their generation's hashes, not a key each ----------------------

GENERATION, HORIZON = keys.RECORD_GENERATION_MS, 35 * 86_400_000
# The middle of the current generation: Redis expires a generation's hashes on its own clock,
# so the worker's (faked below) must not be far behind it.
NOW = (now_ms() // GENERATION) * GENERATION + GENERATION // 2


def worker_clock(monkeypatch, ms: int) -> None:
    """The worker's clock, which picks the generation a record is written in."""
    monkeypatch.setattr(store_module, "now_ms", lambda: ms)


def generation_of(record_hash: str) -> int:
    return int(record_hash.split(":")[-2])


def forget_state(redis, *sessions: str) -> None:
    for session in sessions:
        redis.delete(keys.DEFAULT.message("verihubs", session))  # as MESSAGE_TTL would


def billed_on_day_of(ms: int, messages: int = 1) -> dict:
    """What `billed` answers when `messages` are billed on the UTC day of `ms`."""
    day = datetime.fromtimestamp(ms / 1000, UTC).date().isoformat()
    return {(day, "verihubs", OTP): messages}


def test_a_record_of_an_older_generation_re_attaches_and_moves_to_the_new_one(
    redis, store, reader, monkeypatch
):
    t0 = NOW - 3 * GENERATION  # within the 35-day horizon
    worker_clock(monkeypatch, t0)
    store.apply("b1", [verihubs("s", 0, t0), verihubs("s", 1, t0 + 1000)])
    ((first, _),) = billing_records(redis, "verihubs", "s")
    assert generation_of(first) == t0 // GENERATION
    forget_state(redis, "s")
    worker_clock(monkeypatch, NOW)
    store.apply("b2", [verihubs("s", 2, NOW)])
    assert billed(reader, *ALL_TIME) == billed_on_day_of(t0)
    assert reader.counters()["reattached|verihubs|whatsapp-otp"] == 1
    # One record, in the new generation: the old one is gone, so it cannot outlive it.
    ((moved, value),) = billing_records(redis, "verihubs", "s")
    assert generation_of(moved) == NOW // GENERATION
    assert keys.BillingRecord.decode(value).first_ms == t0
    assert redis.pexpiretime(moved) == (NOW // GENERATION + 1) * GENERATION + HORIZON


def test_a_record_is_found_to_the_horizons_end_and_not_after(redis, store, reader, monkeypatch):
    """The generations looked in are exactly those whose hashes can still be alive."""
    t0 = NOW - 5 * GENERATION  # the oldest generation whose hashes Redis still holds
    worker_clock(monkeypatch, t0)
    store.apply("b1", [verihubs("old", 1, t0), verihubs("gone", 1, t0)])
    forget_state(redis, "old", "gone")
    end = (t0 // GENERATION + 1) * GENERATION + HORIZON  # when t0's hashes expire
    worker_clock(monkeypatch, end - 1)
    store.apply("b2", [verihubs("old", 2, end - 1)])
    worker_clock(monkeypatch, end)
    store.apply("b3", [verihubs("gone", 2, end)])
    values = reader.counters()
    assert values["reattached|verihubs|whatsapp-otp"] == 1  # "old"
    assert values["started|verihubs|whatsapp-otp"] == 3  # both, then "gone" anew
    assert sum(billed(reader, *ALL_TIME).values()) == 3


def test_a_worker_behind_at_a_generations_end_finds_the_record_moved_on(
    redis, store, reader, monkeypatch
):
    """Two workers whose clocks straddle the end of a generation: the one behind finds what
    the one ahead wrote, bills nothing again and does not move the record back."""
    end = (NOW // GENERATION + 1) * GENERATION
    worker_clock(monkeypatch, end - 10)
    store.apply("b1", [verihubs("s", 0, end - 10)])
    worker_clock(monkeypatch, end + 10)  # the worker ahead
    store.apply("b2", [verihubs("s", 1, end - 5)])
    worker_clock(monkeypatch, end - 1)  # the worker behind
    store.apply("b3", [verihubs("s", 2, end - 1)])
    ((where, value),) = billing_records(redis, "verihubs", "s")
    assert generation_of(where) == end // GENERATION
    assert keys.BillingRecord.decode(value).scheme == keys.QUARTER_SCHEME
    assert billed(reader, *ALL_TIME) == billed_on_day_of(end - 10)
    assert reader.counters()["billable|verihubs|whatsapp-otp"] == 1


@pytest.mark.parametrize("generation_started", [True, False])
def test_a_record_hash_of_another_type_fails_the_callback_unapplied(
    redis, store, reader, generation_started
):
    """Where the record goes is read before the replay marker is set, whether or not its
    generation has hashes yet: the retry applies the callback, and its record is kept."""
    generation = f"{keys.DEFAULT.billing_records('verihubs')}:{now_ms() // GENERATION}"
    if generation_started:
        redis.set(generation, "1")  # every record of this generation goes to hash 0
        target = generation + ":0"
    else:
        target = f"{generation}:{keys.record_crc('s') % store.record_shards}"
    redis.set(target, "not a hash")
    (result,) = store.apply_many([("b", [verihubs("s", 1, T0)])])
    assert isinstance(result, ResponseError) and "WRONGTYPE" in str(result)
    redis.delete(target)
    assert [o.value for o in store.apply("b", [verihubs("s", 1, T0)])] == ["new"]
    ((where, _),) = billing_records(redis, "verihubs", "s")
    assert where == target
    assert billed(reader, *ALL_TIME) == {("2026-11-20", "verihubs", OTP): 1}


def test_a_longer_horizon_keeps_a_generations_hash_count_as_long_as_its_records(
    redis, settings, store, monkeypatch
):
    worker_clock(monkeypatch, NOW)
    store.apply("b1", [verihubs("s", 1, NOW)])
    longer = Store(redis, 60, 60, settings.billing_horizon + 86_400, settings.queue_name)
    longer.apply("b2", [verihubs("t", 1, NOW)])
    ((where, _),) = billing_records(redis, "verihubs", "s")
    count = where.rsplit(":", 1)[0]
    ends = (NOW // GENERATION + 1) * GENERATION + HORIZON + 86_400_000
    assert redis.pexpiretime(count) == ends
    assert all(redis.pexpiretime(k) == ends for k, _ in billing_records(redis, "verihubs", "t"))


def test_a_record_kept_under_its_own_key_by_an_earlier_version_still_counts(redis, store, reader):
    store.apply("b1", [verihubs("s", 0, T0), verihubs("s", 1, T0 + 1000)])
    ((where, value),) = billing_records(redis, "verihubs", "s")
    forget_state(redis, "s")
    # As the version before generations kept it: a key of its own, the horizon its ttl.
    redis.hdel(where, "s")
    legacy = keys.DEFAULT.billing_record("verihubs", "s")
    redis.set(legacy, value, px=HORIZON)
    store.apply("b2", [verihubs("s", 2, T0 + 2000)])
    assert billed(reader, *ALL_TIME) == {("2026-11-20", "verihubs", OTP): 1}
    assert reader.counters()["reattached|verihubs|whatsapp-otp"] == 1
    assert not redis.exists(legacy)
    ((_, moved),) = billing_records(redis, "verihubs", "s")
    delivered = 1 << products.status_bit("verihubs", OTP, 2)
    assert (
        keys.BillingRecord.decode(moved).seen == keys.BillingRecord.decode(value).seen | delivered
    )


def test_a_changed_shard_count_starts_with_the_next_generation_and_loses_no_record(
    redis, settings, reader, monkeypatch
):
    def store(shards: int) -> Store:
        return Store(redis, 60, 60, settings.billing_horizon, settings.queue_name,
                     record_shards=shards)  # fmt: skip

    sessions = [f"s{i}" for i in range(40)]
    t0 = NOW - GENERATION
    worker_clock(monkeypatch, t0)
    store(4).apply("b1", [verihubs(s, 1, t0) for s in sessions])
    forget_state(redis, *sessions)
    # Same generation, more hashes asked for: the generation keeps its 4.
    store(64).apply("b2", [verihubs(s, 2, t0 + 1000) for s in sessions[:20]])
    forget_state(redis, *sessions)
    worker_clock(monkeypatch, NOW)
    store(64).apply("b3", [verihubs(s, 2, NOW) for s in sessions[20:]])
    assert billed(reader, *ALL_TIME) == billed_on_day_of(t0, 40)
    assert reader.counters()["reattached|verihubs|whatsapp-otp"] == 40
    shard_numbers: dict[int, list[int]] = {}
    for session in sessions:
        ((where, _),) = billing_records(redis, "verihubs", session)
        shard_numbers.setdefault(generation_of(where), []).append(int(where.rsplit(":", 1)[1]))
    old, new = shard_numbers[t0 // GENERATION], shard_numbers[NOW // GENERATION]
    assert len(old) == len(new) == 20
    assert max(old) < 4 < max(new)
    counts = keys.DEFAULT.billing_records("verihubs")
    assert redis.get(f"{counts}:{t0 // GENERATION}") == b"4"
    assert redis.get(f"{counts}:{NOW // GENERATION}") == b"64"


def test_the_record_shard_count_is_bounded(redis_server):
    from tests.support import make_settings

    for bad in ("0", "-1", str((1 << 20) + 1)):
        with pytest.raises(ValueError, match="BILLING_RECORD_SHARDS"):
            make_settings(redis_server.url, BILLING_RECORD_SHARDS=bad)
    assert make_settings(redis_server.url).billing_record_shards == keys.DEFAULT_RECORD_SHARDS


# Upgrade: counts and messages from before 15-minute buckets --------------------------------


def test_counts_stored_by_utc_day_stay_readable_and_legacy_messages_move_there(
    redis, store, reader
):
    day = datetime(2026, 11, 10, tzinfo=UTC).timestamp() // 86_400
    redis.hset(keys.DEFAULT.billing, f"{int(day)}|verihubs|{OTP}", 2)
    # A message as the code before billing records wrote it: hash only, counted by UTC day.
    first = at("2026-11-10T23:00:00+00:00")
    redis.hset(
        keys.DEFAULT.message("verihubs", "old"), mapping={"p": OTP, "m": 2, "f": first, "1": first}
    )
    assert billed(reader, *ALL_TIME) == {("2026-11-10", "verihubs", OTP): 2}
    # In another zone, these counts keep their UTC date: they have nothing finer.
    assert billed(reader, *ALL_TIME, JAKARTA) == {("2026-11-10", "verihubs", OTP): 2}
    store.apply("b", [verihubs("old", 6, first + 1000)])  # the old message fails
    assert billed(reader, *ALL_TIME) == {("2026-11-10", "verihubs", OTP): 1}
    assert not any(k.startswith(f"{keys.DEFAULT.billing}:".encode()) for k in redis.scan_iter())


# 4. Days in the invoice's time zone -------------------------------------------------------


def test_days_follow_the_zone_asked_for(store, reader):
    store.apply("b", [
        verihubs("a", 1, at("2026-11-30T16:59:00+00:00")),  # 23:59 in Jakarta
        verihubs("b", 1, at("2026-11-30T17:00:00+00:00")),  # 00:00 on Dec 1st in Jakarta
        verihubs("c", 1, at("2026-11-30T23:59:00+00:00")),
    ])  # fmt: skip
    nov30, dec1 = date(2026, 11, 30), date(2026, 12, 1)
    assert billed(reader, nov30, dec1) == {("2026-11-30", "verihubs", OTP): 3}
    assert billed(reader, nov30, dec1, JAKARTA) == {
        ("2026-11-30", "verihubs", OTP): 1,
        ("2026-12-01", "verihubs", OTP): 2,
    }
    assert billed(reader, dec1, dec1, JAKARTA) == {("2026-12-01", "verihubs", OTP): 2}


@pytest.mark.parametrize(("day", "hours"), [(date(2026, 3, 8), 23), (date(2026, 11, 1), 25)])
def test_dst_days_of_23_and_25_hours(store, reader, day, hours):
    start = datetime(day.year, day.month, day.day, tzinfo=NEW_YORK).timestamp()
    first_minute, last_minute = int(start * 1000), int((start + hours * 3600 - 60) * 1000)
    store.apply("b", [
        verihubs("first", 1, first_minute),
        verihubs("last", 1, last_minute),
        verihubs("before", 1, first_minute - 60_000),
        verihubs("after", 1, last_minute + 120_000),
    ])  # fmt: skip
    assert billed(reader, day, day, NEW_YORK) == {(day.isoformat(), "verihubs", OTP): 2}


def test_billing_parameters(app_client, redis, store):
    client = app_client(BILLING_TIMEZONE="Asia/Jakarta")
    store.apply("b", [verihubs("s", 1, at("2026-11-30T18:00:00+00:00"))])
    days = lambda response: [(d["day"], d["billable"]) for d in response.json()["days"]]  # noqa: E731
    default_zone = client.get("/billing", params={"month": "2026-12"}, headers=ADMIN)
    assert (default_zone.json()["from"], default_zone.json()["to"]) == ("2026-12-01", "2026-12-31")
    assert default_zone.json()["tz"] == "Asia/Jakarta"
    assert days(default_zone) == [("2026-12-01", 1)]
    utc = client.get("/billing", params={"month": "2026-11", "tz": "UTC"}, headers=ADMIN)
    assert days(utc) == [("2026-11-30", 1)]
    csv = client.get("/billing", params={"month": "2026-12", "format": "csv"}, headers=ADMIN)
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.headers["content-disposition"] == (
        'attachment; filename="billing-2026-12-01-2026-12-31-Asia_Jakarta.csv"'
    )
    assert csv.text.splitlines() == [
        "day,provider,product,billable",
        "2026-12-01,verihubs,whatsapp-otp,1",
    ]
    # format= wins over the Accept header.
    json = client.get("/billing?month=2026-12&format=json", headers={**ADMIN, "Accept": "text/csv"})
    assert days(json) == [("2026-12-01", 1)]
    february = client.get("/billing", params={"month": "2028-02"}, headers=ADMIN).json()
    assert february["to"] == "2028-02-29"


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"tz": "Mars/Olympus_Mons"}, "unknown time zone"),
        ({"tz": "../../etc/passwd"}, "unknown time zone"),
        ({"month": "2026-13"}, "month must be"),
        ({"month": "2026-1"}, "month must be"),
        ({"month": "2026-11", "from": "2026-11-01"}, "not both"),
        ({"format": "xml"}, "format must be"),
    ],
)
def test_billing_refuses_bad_parameters_with_400(app_client, params, reason):
    answer = app_client().get("/billing", params=params, headers=ADMIN)
    assert answer.status_code == 400
    assert reason in answer.json()["error"]


def test_the_default_range_is_the_31_days_ending_today_in_the_zone(app_client):
    answer = app_client(BILLING_TIMEZONE="Pacific/Kiritimati").get("/billing", headers=ADMIN).json()
    today = datetime.now(ZoneInfo("Pacific/Kiritimati")).date()
    assert answer["to"] == today.isoformat()
    assert (today - date.fromisoformat(answer["from"])).days == 30


def test_an_unknown_billing_timezone_stops_start_up(redis_server):
    from tests.support import make_settings

    with pytest.raises(ValueError, match="BILLING_TIMEZONE"):
        make_settings(redis_server.url, BILLING_TIMEZONE="Nowhere/Else")


# Also -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ("session_id=s1&status=1&status=2", None),
        ("session_id=s1&session_id=s2&status=1", None),
        ("", "session_id=s1&status=1&status=2"),
    ],
)
def test_a_field_given_twice_is_400_and_stores_nothing(app_client, redis, query, body):
    client = app_client()
    url = f"/callbacks/verihubs/{OTP}/{CALLBACK_TOKEN}?{query}"
    if body is None:
        answer = client.get(url)
    else:
        answer = client.post(
            url, content=body, headers={"content-type": "application/x-www-form-urlencoded"}
        )
    assert answer.status_code == 400
    assert "more than once" in answer.json()["error"]
    assert redis.llen("rq:queue:otp-callbacks") == 0
    assert metric(client, "otp_callbacks_rejected_total", reason="duplicate_field") == 1


def test_net_billable_counters_equal_the_billing_sum(app_client, redis, short_lived, reader):
    """otp_messages_billable_total - reversed == the sum of /billing, across all of the above."""
    short_lived.apply("b1", [verihubs(f"s{i}", i % 3, T0 + i * 900_000) for i in range(12)])
    short_lived.apply("b2", [verihubs("s0", 4, T0, SMS), verihubs("s1", 6, T0 + 5000)])
    expire(redis, "s2")
    short_lived.apply("b3", [verihubs("s2", 6, T0 + 86_400_000), verihubs("s5", 1, T0)])
    client = app_client()
    rows = client.get(
        "/billing", params={"from": "2026-01-01", "tz": "Asia/Jakarta"}, headers=ADMIN
    )
    total = sum(d["billable"] for d in rows.json()["days"])
    net = metric(client, "otp_messages_billable_total") - metric(
        client, "otp_messages_billable_reversed_total"
    )
    assert total == net == net_billable(reader) > 0
    assert Counter(r.product for r in reader.billing(*ALL_TIME)) == Counter({OTP: 1})
