"""Renders a PNG preview of the main dashboard panels from a live Prometheus.

    python -m dashboards.preview --prometheus http://127.0.0.1:9090 --minutes 10

The queries are the dashboard's own (dashboards/build.py), with Grafana's variables filled in.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx

from dashboards import build

MAIN = (
    "Callbacks per second by status",
    "Delivery funnel (messages reaching each status)",
    "Failure rate (messages entering a failure state / messages started)",
    "Failures by reason",
    "Latency percentiles from requested/sent",
    "Duplicates, late arrivals, conflicts, unknown codes, product mismatches",
    "Backlog and oldest queued batch",
    "Processing lag p95 (received -> applied)",
)


def substitute(expr: str, rate_interval: str = "1m", range_: str = "10m") -> str:
    """Grafana's variables as Grafana would fill them with 'All' selected."""
    return (
        expr.replace("$provider", ".*")
        .replace("$product", ".*")
        .replace("$__rate_interval", rate_interval)
        .replace("$__range", range_)
    )


def query(prometheus: str, expr: str, **params: Any) -> list[dict[str, Any]]:
    path = "/api/v1/query_range" if "start" in params else "/api/v1/query"
    body = httpx.get(prometheus + path, params={"query": expr, **params}, timeout=30).json()
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body.get('error')}")
    return body["data"]["result"]


def render(prometheus: str, out: Path, minutes: float, rate_interval: str = "1m") -> Path:
    import matplotlib  # a dev tool's dependency, not the service's

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {p.title: p for _, p in build.panels()}
    end = time.time()
    window = {"start": end - minutes * 60, "end": end, "step": max(1, minutes * 60 / 200)}
    fig, axes = plt.subplots(4, 2, figsize=(14, 14))
    for ax, title in zip(axes.flat, MAIN, strict=True):
        panel = panels[title]
        ax.set_title(title, fontsize=10)
        for expr, legend in panel.exprs:
            text = substitute(expr, rate_interval, f"{round(minutes)}m")
            if panel.kind == "bargauge":
                values = query(prometheus, text)
                ax.barh(legend, float(values[0]["value"][1]) if values else 0.0)
                continue
            for series in query(prometheus, text, **window):
                xs = [float(t) - end for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                ax.plot(xs, ys, label=_legend(legend, series["metric"]))
        if panel.kind != "bargauge":
            ax.set_xlabel("seconds ago")
            ax.legend(fontsize=7, loc="upper left")
        ax.set_ylabel(panel.unit)
    fig.suptitle("OTP delivery tracker (rendered from Prometheus by dashboards/preview.py)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def _legend(template: str, labels: dict[str, str]) -> str:
    for name, value in labels.items():
        template = template.replace("{{" + name + "}}", value)
    return template


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard-preview.png"))
    args = parser.parse_args()
    print(render(args.prometheus, args.out, args.minutes))


if __name__ == "__main__":
    main()
