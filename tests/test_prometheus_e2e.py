"""A real Prometheus, configured by the shipped prometheus.yml, scrapes a running stack of two
web processes and a worker fed by the callback simulator; every dashboard query and every
rule then evaluates through Prometheus's HTTP API, and returns data, and no business figure
is counted once per web process."""

from __future__ import annotations

import asyncio
import re
import shutil

import httpx2 as httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from dashboards import build, preview
from tests.samples import SIGNING_KEY, TELNYX_PUBLIC_KEY, verihubs_params, verihubs_url
from tests.subscriber import Subscriber, forwarder
from tests.support import ADMIN_TOKEN, CALLBACK_TOKEN, QUEUE, RULES
from tools.simulate import Simulator
from tools.stack import PrometheusServer, Stack, wait_until

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="needs Debian's prometheus (make test installs it)"
)


@pytest.fixture(scope="module")
def observed(tmp_path_factory, redis_server):
    tmp = tmp_path_factory.mktemp("observed")
    # The forwarder's panels need events out: one endpoint that takes them, one that fails
    # them until they are dead; and delivery timeouts (the fallback rate).
    good, bad = Subscriber().up(), Subscriber(status=500).up()
    timeouts = {"DELIVERY_TIMEOUT": "2"}
    stack = Stack(redis_server.url, tmp, CALLBACK_TOKEN=CALLBACK_TOKEN, ADMIN_TOKEN=ADMIN_TOKEN,
                  LOG_LEVEL="warning", TELNYX_PUBLIC_KEY=TELNYX_PUBLIC_KEY, **timeouts)  # fmt: skip
    forwarding = forwarder(
        redis_server.url, tmp / "forward.log", FORWARD_URL=f"{good.url},{bad.url}",
        FORWARD_RETRY_WINDOW="1", **timeouts,
    )  # fmt: skip
    try:
        stack.start_web()
        second = stack.start_another_web()
        stack.start_worker()
        forwarding.__enter__()
        prometheus = PrometheusServer(stack.ports, RULES / "rules.yml", tmp / "prometheus")
        prometheus.start()
        sim = Simulator(stack.url, CALLBACK_TOKEN, rate=25, speed=4, telnyx_key=SIGNING_KEY)
        codes = asyncio.run(sim.run(seconds=25))
        assert codes[200] > 1000 and set(codes) <= {200, 400}
        for i in range(SECOND_WEB_CALLBACKS):  # the second process takes callbacks too
            answer = httpx.get(second + verihubs_url(), params=verihubs_params(f"w2-{i}", 0))
            assert answer.status_code == 200
        wait_until(
            lambda: _has_data(prometheus, "otp_verify_latency_seconds_count"), what="scrapes"
        )
        for expr in ("otp_forward_dead_events > 0", "otp_delivery_timeouts_total"):
            wait_until(lambda e=expr: _has_data(prometheus, e), timeout=30, what=expr)
        yield prometheus, tmp, stack
    finally:
        if "prometheus" in locals():
            prometheus.stop()
        forwarding.__exit__(None, None, None)
        stack.stop()
        good.down()
        bad.down()


SECOND_WEB_CALLBACKS = 40


def _has_data(prometheus: PrometheusServer, expr: str) -> bool:
    return bool(preview.query(prometheus.url, expr))


def test_every_dashboard_query_returns_data(observed):
    prometheus, *_ = observed
    empty = []
    for _, panel in build.panels():
        for expr, legend in panel.exprs:
            found = preview.query(prometheus.url, preview.substitute(expr, "30s", "5m"))
            if not found:
                empty.append(f"{panel.title}: {legend}")
    assert empty == []


def test_every_rule_is_healthy_and_recording_rules_return_data(observed):
    prometheus, *_ = observed
    wait_until(lambda: _rules(prometheus)[0]["lastEvaluation"] != "0001-01-01T00:00:00Z")
    for rule in _rules(prometheus):
        assert rule["health"] == "ok", rule
        if rule["type"] == "recording":
            assert preview.query(prometheus.url, rule["name"]), rule["name"]
        else:
            preview.query(prometheus.url, rule["query"])  # evaluates without error


def test_every_metric_name_used_exists(observed):
    prometheus, *_ = observed
    names = set(httpx.get(prometheus.url + "/api/v1/label/__name__/values").json()["data"])
    used = set()
    for _, panel in build.panels():
        for expr, _legend in panel.exprs:
            used |= set(re.findall(r"\b(otp_[a-z_]+)\b", expr))
    used |= set(re.findall(r"\b(otp_[a-z_]+)\b", (RULES / "rules.yml").read_text()))
    assert used - names == set()


def test_preview_renders_every_panel_from_real_data(observed):
    prometheus, tmp, _ = observed
    rendered = preview.render(prometheus.url, tmp / "preview.png", minutes=1, rate_interval="30s")
    assert rendered.path.stat().st_size > 100_000
    panels = {panel.title: panel for _, panel in build.panels()}
    assert set(rendered.panels) == set(panels)  # every panel, billing per day included
    for title, drawn in rendered.panels.items():
        assert drawn.series, f"{title}: no data"
        # Axes say their unit in words; every series has a colour of its own.
        assert drawn.unit_label == preview.UNIT_LABELS[panels[title].unit] != panels[title].unit
        assert len(set(drawn.colours)) == len(drawn.series), title
    # Per provider: the scorecard has a bar for each provider the simulator fed.
    delivery = rendered.panels["Delivery rate (messages delivered / started)"].series
    assert {name.split()[0] for name in delivery} >= {"verihubs", "telnyx"}


def _rules(prometheus: PrometheusServer) -> list[dict]:
    groups = httpx.get(prometheus.url + "/api/v1/rules").json()["data"]["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_the_provider_variable_lists_every_provider_seen(observed):
    prometheus, *_ = observed
    values = httpx.get(prometheus.url + "/api/v1/label/provider/values").json()["data"]
    assert {"verihubs", "telnyx"} <= set(values)


def test_business_figures_count_each_callback_once_whatever_the_web_processes(observed):
    """The multiplication trap: every web process serves the same Redis-held counters, and
    Prometheus scrapes /metrics of every process. With the shipped configuration the business
    figures in Prometheus are what Redis holds, not that times the processes."""
    prometheus, _, stack = observed
    redis = Redis.from_url(stack.env["REDIS_URL"])
    wait_until(lambda: redis.llen(QUEUE) == 0, what="queue drained")
    held = _total(httpx.get(stack.url + "/metrics/shared").text, "otp_callbacks_received_total")
    assert held >= codes_needed()
    query = "sum(otp_callbacks_received_total)"
    wait_until(lambda: _value(prometheus, query) == held, what=f"{query} == {held}")
    # Per-process families do come from both processes, and add up.
    by_instance = preview.query(
        prometheus.url,
        'sum by (instance) (otp_http_requests_total{route="/callbacks/verihubs/{product}/{token}"})',
    )
    assert len(by_instance) == 2
    assert min(float(s["value"][1]) for s in by_instance) >= SECOND_WEB_CALLBACKS
    # One target serves what Redis holds: the safety net stays silent.
    assert _value(prometheus, "count by (job) (otp_redis_up)") == 1
    assert preview.query(prometheus.url, 'ALERTS{alertname="OTPSharedMetricsMultiplied"}') == []


def codes_needed() -> int:
    return 1000 + SECOND_WEB_CALLBACKS


def _total(text: str, name: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def _value(prometheus: PrometheusServer, expr: str) -> float | None:
    found = preview.query(prometheus.url, expr)
    return float(found[0]["value"][1]) if found else None
