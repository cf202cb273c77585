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
# The provisioned datasource's uid and name: unique, so provisioning clashes with nothing.
DATASOURCE_UID = "otp-tracker-prometheus"
DATASOURCE_NAME = "OTP tracker Prometheus"
UID = "otp-tracker"
SELECTOR = 'provider=~"$provider",product=~"$product"'
FAILURES = "|".join(sorted(s.value for s in model.FAILURES))
FUNNEL = ("requested", "sent", "delivered", "read", "verified")
RATE_INTERVAL = "$__rate_interval"


@dataclass
class Panel:
    title: str
    exprs: list[tuple[str, str]]  # (PromQL, legend)
    unit: str = "short"  # a Grafana unit id; one per panel, so one per axis
    kind: str = "timeseries"  # timeseries, barchart-daily, bargauge, stat
    width: int = 12
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)


def rate(expr: str) -> str:
    return f"rate({expr}[{RATE_INTERVAL}])"


def by_status() -> list[Panel]:
    return [
        Panel(
            "Callbacks per second by status",
            [
                (
                    f"sum by (status) ({rate(f'otp_callbacks_received_total{{{SELECTOR}}}')})",
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


PER_PROVIDER = "{{provider}} {{product}}"
STARTED_IN_RANGE = (
    f"sum by (provider, product) (increase(otp_messages_started_total{{{SELECTOR}}}[$__range]))"
)


def reached_in_range(status: str) -> str:
    return (
        "sum by (provider, product) (increase(otp_message_statuses_total"
        f'{{{SELECTOR},status="{status}"}}[$__range]))'
    )


def scorecard() -> list[Panel]:
    """Per provider and product, over the selected range: how each one does."""
    entered = f'otp_state_transitions_total{{{SELECTOR},to=~"{FAILURES}",from!~"{FAILURES}"}}'
    latency = [
        (
            f"histogram_quantile({q}, sum by (provider, product, le) (increase(otp_delivery_latency_seconds_bucket{{{SELECTOR}}}[$__range])))",
            f"{PER_PROVIDER} p{round(q * 100)}",
        )
        for q in (0.5, 0.95)
    ]
    net = (
        f"sum by (provider, product) (increase(otp_messages_billable_total{{{SELECTOR}}}[$__range]))"
        f" - sum by (provider, product) (increase(otp_messages_billable_reversed_total{{{SELECTOR}}}[$__range]))"
    )
    card = {"orientation": "horizontal", "displayMode": "basic"}
    return [
        Panel(
            "Delivery rate (messages delivered / started)",
            [(f"{reached_in_range('delivered')} / {STARTED_IN_RANGE}", PER_PROVIDER)],
            "percentunit",
            kind="bargauge",
            width=8,
            description="Messages of the range that reached delivered (or later), per provider and product.",
            options=card,
        ),
        Panel(
            "Verification (conversion) rate (verified / started)",
            [(f"{reached_in_range('verified')} / {STARTED_IN_RANGE}", PER_PROVIDER)],
            "percentunit",
            kind="bargauge",
            width=8,
            description="OTP products only: messages whose code was verified.",
            options=card,
        ),
        Panel(
            "Delivery latency p50 / p95 (requested or sent -> delivered)",
            latency,
            "s",
            kind="bargauge",
            width=8,
            options=card,
        ),
        Panel(
            "Failure mix (messages entering each failure state)",
            [
                (
                    f"sum by (provider, product, to) (increase({entered}[$__range]))",
                    f"{PER_PROVIDER} {{{{to}}}}",
                )
            ],
            kind="bargauge",
            width=12,
            options=card,
        ),
        Panel(
            "Billable messages (net of reversals)",
            [(net, PER_PROVIDER)],
            kind="bargauge",
            width=12,
            description="In the selected range; exact per-day counts for invoices: GET /billing.",
            options=card,
        ),
    ]


def failures() -> list[Panel]:
    entered = f'otp_state_transitions_total{{{SELECTOR},to=~"{FAILURES}",from!~"{FAILURES}"}}'
    into_failure = f'otp_state_transitions_total{{{SELECTOR},to=~"{FAILURES}"}}'
    started = f"otp_messages_started_total{{{SELECTOR}}}"
    return [
        Panel(
            "Failure rate (messages entering a failure state / messages started)",
            [
                (
                    f"sum by (provider, product) ({rate(entered)}) / sum by (provider, product) ({rate(started)})",
                    PER_PROVIDER,
                )
            ],
            "percentunit",
        ),
        Panel(
            "Failures by reason",
            [
                (
                    f"sum by (to) ({rate(into_failure)})",
                    "{{to}}",
                )
            ],
            "mps",
        ),
    ]


def billing_and_latency() -> list[Panel]:
    net = (
        f"sum by (provider, product) (increase(otp_messages_billable_total{{{SELECTOR}}}[1d]))"
        f" - sum by (provider, product) (increase(otp_messages_billable_reversed_total{{{SELECTOR}}}[1d]))"
    )
    quantiles = [
        (
            f"histogram_quantile({q}, sum by (le) ({rate(f'otp_{stage}_latency_seconds_bucket{{{SELECTOR}}}')}))",
            f"{stage} p{round(q * 100)}",
        )
        for stage in ("delivery", "read", "verify")
        for q in (0.5, 0.95)
    ]
    return [
        Panel(
            "Billable messages per day (net of reversals)",
            [(net, PER_PROVIDER)],
            kind="barchart-daily",
            description="Exact per-day counts for invoices: GET /billing.",
        ),
        Panel("Latency percentiles from requested/sent", quantiles, "s"),
    ]


def anomalies() -> list[Panel]:
    series = [
        ("otp_callbacks_duplicate_total", "duplicate"),
        ("otp_callbacks_late_total", "late"),
        ("otp_messages_conflict_total", "conflict"),
        ("otp_callbacks_unknown_total", "unknown code"),
        ("otp_callbacks_product_mismatch_total", "product mismatch"),
    ]
    return [
        Panel(
            "Duplicates, late arrivals, conflicts, unknown codes, product mismatches",
            [(f"sum({rate(f'{name}{{{SELECTOR}}}')})", legend) for name, legend in series],
            "reqps",
            width=24,
        )
    ]


FORWARD = "otp_forward_attempts_total"


def forwarder() -> list[Panel]:
    """The forwarder (events out to the application) and the delivery timer's fallbacks."""
    succeeded = FORWARD + '{result="ok"}'
    ok = f"sum by (endpoint) ({rate(succeeded)})"
    attempts = f"sum by (endpoint) ({rate(FORWARD)})"
    return [
        Panel(
            "Forward attempts by endpoint and result",
            [(f"sum by (endpoint, result) ({rate(FORWARD)})", "endpoint {{endpoint}} {{result}}")],
            "reqps",
            width=8,
            description="Endpoint: the index of the URL in FORWARD_URL, from 0.",
        ),
        Panel(
            "Forward success ratio by endpoint",
            # `or ... * 0`: an endpoint that never succeeds has no ok series, yet is at 0%.
            [(f"({ok} or {attempts} * 0) / {attempts}", "endpoint {{endpoint}}")],
            "percentunit",
            width=8,
        ),
        Panel(
            "Forward latency p95 by endpoint",
            [
                (
                    f"histogram_quantile(0.95, sum by (endpoint, le) ({rate('otp_forward_latency_seconds_bucket')}))",
                    "endpoint {{endpoint}}",
                )
            ],
            "s",
            width=8,
        ),
        Panel(
            "Forward backlog and dead events by endpoint",
            [
                ("sum by (endpoint) (otp_forward_backlog_events)", "endpoint {{endpoint}} backlog"),
                ("sum by (endpoint) (otp_forward_dead_events)", "endpoint {{endpoint}} dead"),
            ],
            width=12,
            description="Backlog: events not yet delivered. Dead: retries exhausted, kept for replay.",
        ),
        Panel(
            "Fallback rate (delivery timeouts / messages started)",
            [
                (
                    f"sum by (provider, product) ({rate(f'otp_delivery_timeouts_total{{{SELECTOR}}}')}) / sum by (provider, product) ({rate(f'otp_messages_started_total{{{SELECTOR}}}')})",
                    PER_PROVIDER,
                )
            ],
            "percentunit",
            width=12,
            description="Messages with no delivery evidence in time (message.delivery_timeout): the application falls back, e.g. to SMS.",
        ),
    ]


def pipeline() -> list[Panel]:
    return [
        Panel(
            "Backlog (callbacks queued)",
            [("sum(otp_queue_events)", "callbacks queued")],
            width=8,
            description="What MAX_BACKLOG bounds; otp_queue_depth counts the batches holding them.",
        ),
        Panel(
            "Processing lag p95 and oldest queued batch",
            [
                (
                    f"histogram_quantile(0.95, sum by (le) ({rate('otp_processing_lag_seconds_bucket')}))",
                    "lag p95 (received -> applied)",
                ),
                ("max(otp_queue_oldest_age_seconds)", "oldest queued batch"),
            ],
            "s",
            width=8,
        ),
        Panel(
            "Mean batch size (callbacks per job)",
            [
                (
                    f"sum({rate('otp_ingest_batch_size_sum')}) / sum({rate('otp_ingest_batch_size_count')})",
                    "mean batch size",
                )
            ],
            width=8,
        ),
        Panel(
            "Failed jobs, Redis up",
            [("sum(otp_queue_failed_jobs)", "failed jobs"), ("min(otp_redis_up)", "redis up")],
            "none",
            kind="stat",
            width=6,
        ),
        Panel(
            "Rejected callbacks by reason",
            [
                (
                    f"sum by (reason) ({rate('otp_callbacks_rejected_total')})",
                    "{{reason}}",
                )
            ],
            "reqps",
            width=6,
        ),
        Panel(
            "HTTP responses by route and code",
            [
                (
                    f"sum by (route, code) ({rate('otp_http_requests_total')})",
                    "{{code}} {{route}}",
                )
            ],
            "reqps",
            width=6,
        ),
        Panel(
            "HTTP p99 duration by route",
            [
                (
                    f"histogram_quantile(0.99, sum by (route, le) ({rate('otp_http_request_duration_seconds_bucket')}))",
                    "{{route}}",
                )
            ],
            "s",
            width=6,
        ),
    ]


ROWS = {
    "Traffic": by_status,
    "Provider scorecard": scorecard,
    "Failures": failures,
    "Billing and latency": billing_and_latency,
    "Anomalies": anomalies,
    "Forwarder and fallback": forwarder,
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
    elif panel.kind in ("bargauge", "stat"):  # one value per series: the range's, or now's
        for t in targets:
            t.update({"instant": True, "range": False})
    options = dict(panel.options)
    if kind in ("timeseries", "barchart"):
        options["legend"] = {
            "displayMode": "list",
            "placement": "bottom",
            "showLegend": True,
            "calcs": [],
        }
    return {
        "id": pid,
        "type": "timeseries" if kind == "barchart" else kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "targets": targets,
        "fieldConfig": {"defaults": _defaults(panel, kind), "overrides": []},
        "options": options,
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
            # The provisioned datasource (dashboards/provisioning/datasources/): never
            # whichever Prometheus happens to be a Grafana's default.
            "current": {"text": DATASOURCE_NAME, "value": DATASOURCE_UID},
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
        "uid": UID,
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
