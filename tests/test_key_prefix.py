"""KEY_PREFIX: two deployments share one Redis and never touch each other's data."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from core.events import Event
from core.read import Reader
from receiver.app import create_app
from receiver.queue_writer import QueueWriter
from tests.samples import verihubs_params, verihubs_url
from tests.support import ADMIN, make_settings, run_jobs
from workers import jobs
from workers.store import Store

AT = 1_795_000_000_000


def test_two_deployments_share_a_redis_without_touching_each_other(redis, redis_server):
    acme, other = (make_settings(redis_server.url, KEY_PREFIX=p) for p in ("acme", "other"))
    assert (acme.queue_name, other.queue_name) == ("acme-callbacks", "other-callbacks")
    # The same session id, sent to both: delivered at one, failed at the other.
    for settings, code in ((acme, 2), (other, 6)):
        with TestClient(create_app(settings, CollectorRegistry())) as client:
            answer = client.get(verihubs_url(), params=verihubs_params("s-1", code))
            assert answer.status_code == 200
            client.get(verihubs_url(token="x" * 40), params=verihubs_params("s-1", 1))  # refused
    for settings in (acme, other):
        jobs.bind(Store.from_settings(redis, settings))
        run_jobs(redis, settings)
    assert Reader(redis, acme.keys).message("verihubs", "s-1").state == "delivered"
    assert Reader(redis, other.keys).message("verihubs", "s-1").state == "failed"
    with TestClient(create_app(acme, CollectorRegistry())) as client:
        seen = client.get("/messages/verihubs/s-1", headers=ADMIN).json()
        assert seen["state"] == "delivered"
        billed = client.get("/billing", params={"from": "2026-01-01"}, headers=ADMIN).json()
        assert [d["billable"] for d in billed["days"]] == [1]
    ours = [k.decode() for k in redis.scan_iter() if not k.startswith(b"rq:")]
    assert ours and all(k.startswith(("acme:", "other:")) for k in ours), ours
    counters = {p: redis.hgetall(f"{p}:counters") for p in ("acme", "other")}
    assert all(c[b"rejected|bad_token"] == b"1" for c in counters.values())


def test_a_worker_of_one_deployment_writes_under_its_prefix(redis, redis_server):
    settings = make_settings(redis_server.url, KEY_PREFIX="acme")
    QueueWriter(redis, settings).write([Event("meta", "whatsapp", "w", 2, AT, AT)], {})
    jobs.bind(Store.from_settings(redis, settings))
    run_jobs(redis, settings)
    assert redis.exists("acme:m:meta:w") and not redis.exists("otp:m:meta:w")


@pytest.mark.parametrize("prefix", ["", "a:b", "x" * 33, "acme corp"])
def test_a_prefix_that_could_run_into_other_keys_stops_start_up(redis_server, prefix):
    with pytest.raises(ValueError, match="KEY_PREFIX"):
        make_settings(redis_server.url, KEY_PREFIX=prefix)
