"""/metrics behind METRICS_TOKEN or on its own listener (METRICS_PORT), Redis read at most
once per METRICS_CACHE_SECONDS whatever the number of scrapers, and HTTP metrics whose label
values a client cannot multiply."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx2 as httpx
import uvicorn
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from starlette.testclient import TestClient

from core.embedded import free_port
from receiver.app import create_app, create_metrics_app
from tests.attacks import Attack, against_the_floor, callback_latency, near_the_floor
from tests.samples import verihubs_params, verihubs_url
from tests.support import CALLBACK_TOKEN, live_receiver, make_settings
from tools.stack import wait_until

METRICS_TOKEN = "metrics-token-0123456789abcdefghijkl"
BEARER = {"Authorization": f"Bearer {METRICS_TOKEN}"}
OLD_TOKEN = "old-metrics-token-0123456789abcdefgh"


# METRICS_TOKEN.


def test_with_metrics_token_metrics_need_the_bearer_token(app_client):
    client = app_client(METRICS_TOKEN=f"{METRICS_TOKEN},{OLD_TOKEN}")
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}x"})
    assert wrong.status_code == 401 and wrong.json() == {
        "error": "a valid bearer token is required"
    }
    for token in (METRICS_TOKEN, OLD_TOKEN):
        answer = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200
    refused = _samples(answer.text, "otp_admin_rejected_total")
    assert refused[(("reason", "bad_metrics_token"),)] == 2
    # The public document says so.
    operation = client.get("/openapi.json").json()["paths"]["/metrics"]["get"]
    assert {"metricsAuth": []} in operation["security"]


def test_without_metrics_token_metrics_stay_open(app_client):
    assert app_client().get("/metrics").status_code == 200


# METRICS_PORT: the public listener serves no /metrics; the second one serves only that.


def test_with_metrics_port_only_the_metrics_listener_serves_metrics(redis_server, store):
    settings = make_settings(redis_server.url, METRICS_PORT=str(free_port()))
    app = create_app(settings, CollectorRegistry())
    metrics_app = create_metrics_app(app)
    with TestClient(app) as public, TestClient(metrics_app) as metrics:
        assert public.get(verihubs_url(), params=verihubs_params("mp-1", 1)).status_code == 200
        assert public.get("/metrics").status_code == 404
        assert "/metrics" not in public.get("/openapi.json").json()["paths"]
        text = metrics.get("/metrics").text
        # The same registry: the public listener's requests are there.
        requests = _samples(text, "otp_http_requests_total")
        assert requests[(("code", "200"), ("method", "GET"), ("route", verihubs_route()))] == 1
        assert metrics.get("/healthz").status_code == 404
        assert metrics.get(verihubs_url(), params=verihubs_params("mp-2", 1)).status_code == 404


def test_the_metrics_listener_answers_503_until_the_public_app_has_started(redis_server):
    settings = make_settings(redis_server.url, METRICS_PORT=str(free_port()))
    metrics_app = create_metrics_app(create_app(settings, CollectorRegistry()))
    with TestClient(metrics_app) as metrics:
        answer = metrics.get("/metrics")
        assert answer.status_code == 503 and answer.headers["retry-after"] == "5"


def test_two_listeners_in_one_process_over_real_sockets(redis_server, store):
    """What the launcher does with METRICS_PORT: two uvicorn servers, one event loop."""
    public_port, metrics_port = free_port(), free_port()
    settings = make_settings(
        redis_server.url, METRICS_PORT=str(metrics_port), METRICS_TOKEN=METRICS_TOKEN
    )
    app = create_app(settings, CollectorRegistry())
    with serving(app, public_port, create_metrics_app(app), metrics_port):
        public, metrics = f"http://127.0.0.1:{public_port}", f"http://127.0.0.1:{metrics_port}"
        callback = httpx.get(public + verihubs_url(), params=verihubs_params("two-1", 1))
        assert callback.status_code == 200
        assert httpx.get(public + "/metrics", headers=BEARER).status_code == 404
        assert httpx.get(metrics + "/metrics").status_code == 401
        text = httpx.get(metrics + "/metrics", headers=BEARER).text
        assert 'route="/callbacks/verihubs/{product}/{token}"' in text
        assert httpx.get(metrics + "/metrics/shared").status_code == 401
        shared = httpx.get(metrics + "/metrics/shared", headers=BEARER).text
        assert "otp_redis_up 1.0" in shared and "otp_redis_up" not in text
        assert httpx.get(public + "/metrics/shared", headers=BEARER).status_code == 404


@contextmanager
def serving(app, port: int, metrics_app, metrics_port: int) -> Iterator[None]:
    servers = [
        uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning")),
        uvicorn.Server(
            uvicorn.Config(metrics_app, port=metrics_port, lifespan="off", log_level="warning")
        ),
    ]

    async def main() -> None:
        await asyncio.gather(*(server.serve() for server in servers))

    thread = threading.Thread(target=asyncio.run, args=(main(),))
    thread.start()
    try:
        wait_until(lambda: all(s.started for s in servers), what="both listeners")
        yield
    finally:
        for server in servers:
            server.should_exit = True
        thread.join(timeout=10)


# The cache: scrapes share one rendering (and one read of Redis) per METRICS_CACHE_SECONDS.


def test_many_scrapes_read_redis_once_per_cache_period(redis_server, redis):
    with live_receiver(redis_server.url, METRICS_CACHE_SECONDS="30") as url:
        before = _counter_reads(redis)
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: httpx.get(url + "/metrics/shared"), range(64)))
        assert {a.status_code for a in answers} == {200}
        assert all("otp_redis_up 1.0" in a.text for a in answers)
        assert _counter_reads(redis) - before == 1


BAD_TOKEN = 'otp_callbacks_rejected_total{reason="bad_token"} 1.0'


def test_the_page_is_rendered_again_after_its_period(app_client, redis):
    client = app_client(METRICS_CACHE_SECONDS="30")
    client.app.state.ctx.shared.clock = clock = _Clock()
    assert BAD_TOKEN not in client.get("/metrics/shared").text
    refused = client.get(verihubs_url(token="x" * 32), params=verihubs_params("c", 1))
    assert refused.status_code == 404
    wait_until(lambda: redis.hget("otp:counters", "rejected|bad_token") is not None)
    clock.now += 29
    assert BAD_TOKEN not in client.get("/metrics/shared").text  # the page of 29 s ago
    clock.now += 1
    assert BAD_TOKEN in client.get("/metrics/shared").text


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _counter_reads(redis: Redis) -> int:
    return redis.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0)


# Bounded labels.


def test_http_metrics_labels_stay_bounded_whatever_the_method_and_path(app_client):
    client = app_client()
    methods = ["PROPFIND", "MKCOL", "PURGE", "M-SEARCH", "PATCH", "DELETE", "OPTIONS", "TRACE"]
    for i, method in enumerate(methods):
        for path in (f"/nope-{i}", "/billing", verihubs_url(), f"/callbacks/x{i}"):
            client.request(method, path)
    client.get("/healthz")
    client.head("/healthz")
    series = _samples(client.get("/metrics").text, "otp_http_requests_total")
    assert {dict(labels)["method"] for labels in series} == {"GET", "HEAD", "other"}
    routes = {dict(labels)["route"] for labels in series}
    assert routes == {"unmatched", "/billing", verihubs_route(), "/healthz"}
    assert len(series) <= 12, sorted(series)


def verihubs_route() -> str:
    return "/callbacks/verihubs/{product}/{token}"


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


# Over the wire: scrapers do not slow a real callback.


def test_a_scrape_flood_leaves_callbacks_fast_and_redis_alone(redis_server, redis):
    # No throttling: every unauthenticated scrape has its token compared and refused 401
    # (with it, they get 429 after 10, cheaper still, and so would the authorized ones).
    env = {"CALLBACK_TOKEN": CALLBACK_TOKEN, "METRICS_TOKEN": METRICS_TOKEN}
    with live_receiver(redis_server.url, AUTH_FAILURES_PER_MINUTE="0", **env) as url:
        baseline = callback_latency(url)
        reads = _counter_reads(redis)
        unauthenticated, floor = against_the_floor(url, Attack("/metrics/shared"))
        assert _counter_reads(redis) == reads  # refused before anything is read
        authorized = callback_latency(url, Attack("/metrics/shared", BEARER))
        reads = _counter_reads(redis) - reads
        authorized_again, floor_again = against_the_floor(url, Attack("/metrics/shared", BEARER))
    print(f"\nno attack: {baseline}")
    print(f"16 clients on /healthz: {floor}\n16 unauthenticated scrapers: {unauthenticated}")
    print(f"16 authorized scrapers: {authorized}; Redis HGETALLs: {reads}")
    print(f"16 clients on /healthz: {floor_again}\n16 authorized scrapers: {authorized_again}")
    assert set(unauthenticated.attacks) == {401} and set(authorized.attacks) == {200}
    for measured in (baseline, floor, unauthenticated, authorized, authorized_again):
        assert set(measured.callbacks) == {200}
    # About one read per METRICS_CACHE_SECONDS (1 s) of the 4 s flood, not one per scrape
    # (a read is two HGETALLs here: the counters, and the oldest queued job for its age).
    assert reads <= 2 * 6 < sum(authorized.attacks.values())
    # A scrape, refused or served from the page, costs about what /healthz does (before: 16
    # scrapers took a callback from 4 ms to 45 ms median).
    assert near_the_floor(unauthenticated, floor), (unauthenticated, floor)
    assert near_the_floor(authorized_again, floor_again), (authorized_again, floor_again)
