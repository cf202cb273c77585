"""A real Prometheus scrapes a running stack fed by the callback simulator; every dashboard
query and every rule then evaluates through Prometheus's HTTP API, and returns data."""

from __future__ import annotations

import asyncio
import re
import shutil

import httpx2 as httpx
import pytest

from dashboards import build, preview
from tests.samples import SIGNING_KEY, TELNYX_PUBLIC_KEY
from tests.support import ADMIN_TOKEN, CALLBACK_TOKEN, RULES
from tools.simulate import Simulator
from tools.stack import PrometheusServer, Stack, wait_until

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="needs Debian's prometheus (make test installs it)"
)


@pytest.fixture(scope="module")
def observed(tmp_path_factory, redis_server):
    tmp = tmp_path_factory.mktemp("observed")
    stack = Stack(redis_server.url, tmp, CALLBACK_TOKEN=CALLBACK_TOKEN, ADMIN_TOKEN=ADMIN_TOKEN,
                  LOG_LEVEL="warning", TELNYX_PUBLIC_KEY=TELNYX_PUBLIC_KEY)  # fmt: skip
    prometheus = PrometheusServer(stack.port, RULES / "rules.yml", tmp / "prometheus")
    try:
        stack.start_web()
        stack.start_worker()
        prometheus.start()
        sim = Simulator(stack.url, CALLBACK_TOKEN, rate=25, speed=4, telnyx_key=SIGNING_KEY)
        codes = asyncio.run(sim.run(seconds=25))
        assert codes[200] > 1000 and set(codes) <= {200, 400}
        wait_until(
            lambda: _has_data(prometheus, "otp_verify_latency_seconds_count"), what="scrapes"
        )
        yield prometheus, tmp
    finally:
        prometheus.stop()
        stack.stop()


def _has_data(prometheus: PrometheusServer, expr: str) -> bool:
    return bool(preview.query(prometheus.url, expr))


def test_every_dashboard_query_returns_data(observed):
    prometheus, _ = observed
    empty = []
    for _, panel in build.panels():
        for expr, legend in panel.exprs:
            if not preview.query(prometheus.url, preview.substitute(expr, "30s", "5m")):
                empty.append(f"{panel.title}: {legend}")
    assert empty == []


def test_every_rule_is_healthy_and_recording_rules_return_data(observed):
    prometheus, _ = observed
    wait_until(lambda: _rules(prometheus)[0]["lastEvaluation"] != "0001-01-01T00:00:00Z")
    for rule in _rules(prometheus):
        assert rule["health"] == "ok", rule
        if rule["type"] == "recording":
            assert preview.query(prometheus.url, rule["name"]), rule["name"]
        else:
            preview.query(prometheus.url, rule["query"])  # evaluates without error


def test_every_metric_name_used_exists(observed):
    prometheus, _ = observed
    names = set(httpx.get(prometheus.url + "/api/v1/label/__name__/values").json()["data"])
    used = set()
    for _, panel in build.panels():
        for expr, _legend in panel.exprs:
            used |= set(re.findall(r"\b(otp_[a-z_]+)\b", expr))
    used |= set(re.findall(r"\b(otp_[a-z_]+)\b", (RULES / "rules.yml").read_text()))
    assert used - names == set()


def test_preview_renders_from_real_data(observed):
    prometheus, tmp = observed
    out = preview.render(prometheus.url, tmp / "preview.png", minutes=1, rate_interval="30s")
    assert out.stat().st_size > 50_000


def _rules(prometheus: PrometheusServer) -> list[dict]:
    groups = httpx.get(prometheus.url + "/api/v1/rules").json()["data"]["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_the_provider_variable_lists_every_provider_seen(observed):
    prometheus, _ = observed
    values = httpx.get(prometheus.url + "/api/v1/label/provider/values").json()["data"]
    assert {"verihubs", "telnyx"} <= set(values)
