"""Generates the Grafana dashboard (`python -m dashboards.build`); the JSON is kept in git.

Plain Python over dicts: the dashboard model is small and stable, and a test checks the
committed JSON is what this code produces.

It also writes every alert's `runbook_url` in the rules (and their tests) as an absolute URL
under `--runbook-base` (`make dashboards RUNBOOK_BASE_URL=...`): Alertmanager, Slack or a
pager cannot resolve a path relative to a repository they never saw.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import model

OUT = Path(__file__).parent / "grafana" / "otp-tracker.json"
RULES = Path(__file__).parent / "prometheus"
RULE_FILES = (RULES / "rules.yml", RULES / "rules_test.yml")
# Where docs/runbook.md is published; the committed rules carry this default. A deployment
# builds its own with `make dashboards RUNBOOK_BASE_URL=https://git.example.com/.../runbook.md`.
RUNBOOK_BASE_URL = "https://otp-tracker.example/docs/runbook.md"
RUNBOOK_URL = re.compile(r"(runbook_url: )\S*#([a-z0-9-]+)")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SELECTOR = 'provider=~"$provider",product=~"$product"'
FAILURES = "|".join(sorted(s.value for s in model.FAILURES))
FUNNEL = ("requested", "sent", "delivered", "read", "verified")
RATE_INTERVAL = "$__rate_interval"


@dataclass
class Panel:
    title: str
    exprs: list[tuple[str, str]]  # (PromQL, legend)
    unit: str = "short"
    kind: str = "timeseries"
    width: int = 12
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)


def by_status() -> list[Panel]:
    return [
        Panel(
            "Callbacks per second by status",
            [
                (
                    f"sum by (status) (rate(otp_callbacks_received_total{{{SELECTOR}}}[{RATE_INTERVAL}]))",
                    "{{status}}",
                )
            ],
            "reqps",
            description="Every callback applied, duplicates included.",
        ),
        Panel(
            "Delivery funnel (messages reaching each status)",
            [
                (
                    f'sum(increase(otp_message_statuses_total{{{SELECTOR},status="{s}"}}[$__range]))',
                    s,
                )
                for s in FUNNEL
            ],
            kind="bargauge",
            description="Counted once per message and status, in the selected time range.",
            options={"orientation": "horizontal", "displayMode": "gradient"},
        ),
    ]


def failures() -> list[Panel]:
    entered = f'otp_state_transitions_total{{{SELECTOR},to=~"{FAILURES}",from!~"{FAILURES}"}}'
    return [
        Panel(
            "Failure rate (messages entering a failure state / messages started)",
            [
                (
                    f"sum(rate({entered}[{RATE_INTERVAL}])) / sum(rate(otp_messages_started_total{{{SELECTOR}}}[{RATE_INTERVAL}]))",
                    "failure rate",
                )
            ],
            "percentunit",
        ),
        Panel(
            "Failures by reason",
            [
                (
                    f'sum by (to) (rate(otp_state_transitions_total{{{SELECTOR},to=~"{FAILURES}"}}[{RATE_INTERVAL}]))',
                    "{{to}}",
                )
            ],
            "reqps",
        ),
    ]


def billing_and_latency() -> list[Panel]:
    net = (
        f"sum by (provider, product) (increase(otp_messages_billable_total{{{SELECTOR}}}[1d]))"
        f" - sum by (provider, product) (increase(otp_messages_billable_reversed_total{{{SELECTOR}}}[1d]))"
    )
    quantiles = [
        (
            f"histogram_quantile({q}, sum by (le) (rate(otp_{stage}_latency_seconds_bucket{{{SELECTOR}}}[{RATE_INTERVAL}])))",
            f"{stage} p{round(q * 100)}",
        )
        for stage in ("delivery", "read", "verify")
        for q in (0.5, 0.95)
    ]
    return [
        Panel(
            "Billable messages per day (net of reversals)",
            [(net, "{{provider}} {{product}}")],
            kind="barchart-daily",
            description="Exact per-day counts for invoices: GET /billing.",
        ),
        Panel("Latency percentiles from requested/sent", quantiles, "s"),
    ]


def anomalies() -> list[Panel]:
    return [
        Panel(
            "Duplicates, late arrivals, conflicts, unknown codes, product mismatches",
            [
                (
                    f"sum(rate(otp_callbacks_duplicate_total{{{SELECTOR}}}[{RATE_INTERVAL}]))",
                    "duplicate",
                ),
                (f"sum(rate(otp_callbacks_late_total{{{SELECTOR}}}[{RATE_INTERVAL}]))", "late"),
                (
                    f"sum(rate(otp_messages_conflict_total{{{SELECTOR}}}[{RATE_INTERVAL}]))",
                    "conflict",
                ),
                (
                    f"sum(rate(otp_callbacks_unknown_total{{{SELECTOR}}}[{RATE_INTERVAL}]))",
                    "unknown code",
                ),
                (
                    f"sum(rate(otp_callbacks_product_mismatch_total{{{SELECTOR}}}[{RATE_INTERVAL}]))",
                    "product mismatch",
                ),
            ],
            "reqps",
            width=24,
        )
    ]


def pipeline() -> list[Panel]:
    return [
        Panel(
            "Backlog and oldest queued batch",
            [
                ("sum(otp_queue_depth)", "batches queued"),
                ("max(otp_queue_oldest_age_seconds)", "oldest queued (s)"),
            ],
            width=8,
        ),
        Panel(
            "Processing lag p95 (received -> applied)",
            [
                (
                    f"histogram_quantile(0.95, sum by (le) (rate(otp_processing_lag_seconds_bucket[{RATE_INTERVAL}])))",
                    "p95",
                ),
                (
                    f"sum(rate(otp_ingest_batch_size_sum[{RATE_INTERVAL}])) / sum(rate(otp_ingest_batch_size_count[{RATE_INTERVAL}]))",
                    "mean batch size",
                ),
            ],
            width=8,
        ),
        Panel(
            "Failed jobs, Redis up",
            [("sum(otp_queue_failed_jobs)", "failed jobs"), ("min(otp_redis_up)", "redis up")],
            kind="stat",
            width=8,
        ),
        Panel(
            "Rejected callbacks by reason",
            [
                (
                    f"sum by (reason) (rate(otp_callbacks_rejected_total[{RATE_INTERVAL}]))",
                    "{{reason}}",
                )
            ],
            "reqps",
            width=8,
        ),
        Panel(
            "HTTP responses by route and code",
            [
                (
                    f"sum by (route, code) (rate(otp_http_requests_total[{RATE_INTERVAL}]))",
                    "{{code}} {{route}}",
                )
            ],
            "reqps",
            width=8,
        ),
        Panel(
            "HTTP p99 duration by route",
            [
                (
                    f"histogram_quantile(0.99, sum by (route, le) (rate(otp_http_request_duration_seconds_bucket[{RATE_INTERVAL}])))",
                    "{{route}}",
                )
            ],
            "s",
            width=8,
        ),
    ]


ROWS = {
    "Traffic": by_status,
    "Failures": failures,
    "Billing and latency": billing_and_latency,
    "Anomalies": anomalies,
    "Pipeline health": pipeline,
}


def panels() -> Iterator[tuple[str, Panel]]:
    for row, make in ROWS.items():
        for panel in make():
            yield row, panel


def _panel_json(panel: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    kind = "barchart" if panel.kind == "barchart-daily" else panel.kind
    targets = [
        {"refId": chr(65 + i), "expr": expr, "legendFormat": legend, "datasource": DATASOURCE}
        for i, (expr, legend) in enumerate(panel.exprs)
    ]
    if panel.kind == "barchart-daily":
        for t in targets:
            t.update({"interval": "1d", "range": True})
    return {
        "id": pid,
        "type": "timeseries" if kind == "barchart" else kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "targets": targets,
        "fieldConfig": {"defaults": _defaults(panel, kind), "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, **panel.options},
    }


def _defaults(panel: Panel, kind: str) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit}
    if kind == "barchart":
        defaults["custom"] = {"drawStyle": "bars", "fillOpacity": 80}
    return defaults


def _variables() -> list[dict[str, Any]]:
    def query(name: str, q: str) -> dict[str, Any]:
        return {
            "name": name,
            "label": name.capitalize(),
            "type": "query",
            "datasource": DATASOURCE,
            "query": {"query": q, "refId": name},
            "definition": q,
            "refresh": 2,
            "includeAll": True,
            "multi": True,
            "allValue": ".*",
            "current": {"text": "All", "value": "$__all"},
            "sort": 1,
        }

    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
        },
        query("provider", "label_values(otp_callbacks_received_total, provider)"),
        query(
            "product", 'label_values(otp_callbacks_received_total{provider=~"$provider"}, product)'
        ),
    ]


def dashboard() -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    pid, y, x, current_row = 1, 0, 0, None
    for row, panel in panels():
        if row != current_row:
            y += 8 if x else 0
            out.append(
                {
                    "id": pid,
                    "type": "row",
                    "title": row,
                    "collapsed": False,
                    "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                    "panels": [],
                }
            )
            pid, y, x, current_row = pid + 1, y + 1, 0, row
        if x + panel.width > 24:
            x, y = 0, y + 8
        out.append(_panel_json(panel, pid, x, y))
        pid, x = pid + 1, x + panel.width
    return {
        "uid": "otp-tracker",
        "title": "OTP delivery tracker",
        "tags": ["otp", "whatsapp"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": _variables()},
        "annotations": {"list": []},
        "panels": out,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def with_runbook_base(rules: str, base: str = RUNBOOK_BASE_URL) -> str:
    """Every `runbook_url: ...#anchor` as `base#anchor` (the anchor is kept)."""
    if not re.fullmatch(r"https?://\S+", base) or "#" in base:
        raise ValueError(f"the runbook base must be an absolute http(s) URL without '#': {base!r}")
    return RUNBOOK_URL.sub(lambda m: f"{m[1]}{base}#{m[2]}", rules)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runbook-base", default=RUNBOOK_BASE_URL)
    args = parser.parse_args()
    OUT.write_text(render())
    print(f"wrote {OUT}")
    for path in RULE_FILES:
        path.write_text(with_runbook_base(path.read_text(), args.runbook_base))
        print(f"wrote {path} (runbook_url under {args.runbook_base})")


if __name__ == "__main__":
    main()
