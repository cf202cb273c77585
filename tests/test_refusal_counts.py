"""Refusals are counted in memory and flushed on a short timer: a flood of them costs Redis a
bounded number of transactions, and every one of them is still counted."""

from __future__ import annotations

import time

from receiver import batcher
from tests.samples import verihubs_params, verihubs_url
from tests.support import metric

FLOOD = 400


def _transactions(redis) -> int:
    return int(redis.info("commandstats").get("cmdstat_exec", {}).get("calls", 0))


def test_a_flood_of_refusals_costs_redis_a_bounded_number_of_writes(app_client, redis):
    client = app_client()
    before = _transactions(redis)
    started = time.monotonic()
    for n in range(FLOOD):
        answer = client.get(verihubs_url(token="x" * 40), params=verihubs_params(f"s{n}", 1))
        assert answer.status_code == 404
    elapsed = time.monotonic() - started
    deadline = time.monotonic() + 5
    while int(redis.hget("otp:counters", "rejected|bad_token") or 0) < FLOOD:
        assert time.monotonic() < deadline, "the counts never reached Redis"
        time.sleep(0.05)
    periods = elapsed / batcher.COUNTS_FLUSH_SECONDS + 3
    assert _transactions(redis) - before <= periods < FLOOD / 4
    assert int(redis.hget("otp:counters", "rejected|bad_token")) == FLOOD


def test_metrics_include_this_processs_refusals_at_once(app_client):
    client = app_client()
    client.get(verihubs_url(token="y" * 40), params=verihubs_params("s", 1))
    assert metric(client, "otp_callbacks_rejected_total", reason="bad_token") == 1
