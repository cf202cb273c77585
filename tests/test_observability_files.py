"""Dashboards, rules and metrics output, checked with Prometheus's own promtool."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from dashboards import build
from receiver.app import create_app
from tests.samples import verihubs_params, verihubs_url
from tests.support import RULES, run_jobs

RUNBOOK = Path(build.__file__).parent.parent / "docs" / "runbook.md"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: .ci/run installs Debian's prometheus package")
        pytest.skip("promtool not installed (make test installs it with apt-get as root)")
    return found


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=RULES, input=stdin, capture_output=True, text=True, check=False
    )


def test_rules_are_valid():
    result = run("check", "rules", "rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_unit_tests_that_pass():
    result = run("test", "rules", "rules_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = set(re.findall(r"- alert: (\w+)", (RULES / "rules.yml").read_text()))
    tested = set(re.findall(r"alertname: (\w+)", (RULES / "rules_test.yml").read_text()))
    assert alerts == tested


def test_every_alert_has_a_runbook_entry():
    runbook = RUNBOOK.read_text().lower()
    for alert in re.findall(r"- alert: (\w+)", (RULES / "rules.yml").read_text()):
        assert f"## {alert.lower()}" in runbook


def test_rules_name_the_models_failure_statuses():
    rules = (RULES / "rules.yml").read_text()
    assert rules.count(build.FAILURES) >= 3


def test_committed_dashboard_is_the_generated_one():
    assert build.OUT.read_text() == build.render(), "run: python -m dashboards.build"


def test_every_runbook_url_is_absolute_and_points_at_its_alerts_entry():
    """Alertmanager, a pager or a chat message cannot resolve a path relative to a repository:
    each rule's runbook_url is `<RUNBOOK_BASE_URL>#<alert>`, an entry the runbook has."""
    rules = (RULES / "rules.yml").read_text()
    alerts = re.findall(r"- alert: (\w+)", rules)
    urls = re.findall(r"runbook_url: (\S+)", rules)
    assert urls == [f"{build.RUNBOOK_BASE_URL}#{alert.lower()}" for alert in alerts]
    for path in build.RULE_FILES:  # as `make dashboards` writes them
        text = path.read_text()
        assert build.with_runbook_base(text) == text, "run: make dashboards"
        assert "runbook_url: docs/" not in text


def test_the_runbook_base_is_a_build_setting():
    rules = (RULES / "rules.yml").read_text()
    base = "https://git.example.com/ops/otp/-/blob/main/docs/runbook.md"
    built = build.with_runbook_base(rules, base)
    assert built.count(f"runbook_url: {base}#otpfailureratehigh") == 1
    assert built.count("runbook_url: ") == built.count(f"runbook_url: {base}#")
    assert build.with_runbook_base(built) == rules  # and back again
    for bad in ("docs/runbook.md", "ftp://x/runbook", "https://x/runbook.md#top"):
        with pytest.raises(ValueError):
            build.with_runbook_base(rules, bad)


def test_metrics_output_passes_promtool(redis, settings, store):
    otp = verihubs_url("whatsapp-otp")
    with TestClient(create_app(settings, CollectorRegistry())) as client:
        for sid, code in [("a", 0), ("a", 2), ("a", 4), ("b", 6), ("b", 2), ("c", 99)]:
            client.get(otp, params=verihubs_params(sid, code))
        client.get(otp, params={"status": 1})
        run_jobs(redis, settings)
        text = client.get("/metrics").text + client.get("/metrics/shared").text
    assert "otp_delivery_latency_seconds_bucket" in text
    result = run("check", "metrics", stdin=text)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
