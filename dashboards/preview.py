"""Renders a PNG preview of every dashboard panel from a live Prometheus.

    python -m dashboards.preview --prometheus http://127.0.0.1:9090 --minutes 10

The queries are the dashboard's own (dashboards/build.py), with Grafana's variables filled in
as Grafana fills them with "All" selected, so per-provider panels show one series per
provider and product. Each panel is drawn as its kind is in Grafana (time series, bars per
day, bar gauges, stat values), its axis labelled with its unit in words and ticks formatted
in it, each series in a colour of its own.
"""

from __future__ import annotations

import argparse
import colorsys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx

from dashboards import build

# Grafana unit ids (dashboards/build.py) as a reader says them.
UNIT_LABELS = {
    "reqps": "requests per second",
    "mps": "messages per second",
    "percentunit": "percent",
    "s": "seconds",
    "short": "count",
    "none": "value",
}
COLUMNS = 3


@dataclass
class Drawn:
    """What the preview drew of one panel (for the tests)."""

    kind: str
    unit_label: str
    series: list[str] = field(default_factory=list)
    colours: list[tuple[float, float, float]] = field(default_factory=list)


@dataclass
class Rendered:
    path: Path
    panels: dict[str, Drawn]


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


def colours(n: int) -> list[tuple[float, float, float]]:
    """n colours, all different: matplotlib's tab10/tab20 while they last, then hues spread
    evenly around the wheel."""
    from matplotlib import colormaps

    if n <= 10:
        return [tuple(colormaps["tab10"](i)[:3]) for i in range(n)]
    if n <= 20:
        return [tuple(colormaps["tab20"](i)[:3]) for i in range(n)]
    return [colorsys.hsv_to_rgb(i / n, 0.75, 0.85 if i % 2 else 0.6) for i in range(n)]


def render(prometheus: str, out: Path, minutes: float, rate_interval: str = "1m") -> Rendered:
    import matplotlib  # a dev tool's dependency, not the service's

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(build.panels())
    rows = -(-len(panels) // COLUMNS)
    fig, axes = plt.subplots(rows, COLUMNS, figsize=(7 * COLUMNS, 4.2 * rows))
    end = time.time()
    window = {"start": end - minutes * 60, "end": end, "step": max(1, minutes * 60 / 240)}
    range_ = f"{max(1, round(minutes))}m"
    drawn: dict[str, Drawn] = {}
    for ax, (row, panel) in zip(axes.flat, panels, strict=False):
        ax.set_title(f"{row}: {panel.title}", fontsize=9, loc="left")
        series = [
            (_legend(legend, found["metric"]), found)
            for expr, legend in panel.exprs
            for found in query(
                prometheus,
                substitute(expr, rate_interval, "1d" if panel.kind == "barchart-daily" else range_),
                **({} if panel.kind in ("bargauge", "stat", "barchart-daily") else window),
            )
        ]
        drawn[panel.title] = Drawn(panel.kind, UNIT_LABELS[panel.unit])
        _draw(ax, panel, series, drawn[panel.title], end, minutes)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    stamp = datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%d %H:%M UTC")
    fig.suptitle(
        f"OTP delivery tracker: every panel of dashboards/grafana/otp-tracker.json, the last"
        f" {minutes:g} minutes to {stamp} (rendered from Prometheus by dashboards/preview.py)",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=72)
    plt.close(fig)
    return Rendered(out, drawn)


def _draw(
    ax: Any, panel: build.Panel, series: list, drawn: Drawn, end: float, minutes: float
) -> None:
    palette = colours(len(series))
    drawn.series = [name for name, _ in series]
    drawn.colours = palette
    if not series:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    if panel.kind == "stat":
        text = "\n".join(f"{name}: {float(s['value'][1]):g}" for name, s in series)
        ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=16, transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    if panel.kind == "bargauge":
        names = [name for name, _ in series]
        values = [float(s["value"][1]) for _, s in series]
        ax.barh(names, values, color=palette)
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel(drawn.unit_label)
        _format(ax.xaxis, panel.unit)
        for y, v in enumerate(values):
            ax.text(v, y, " " + _value(v, panel.unit), va="center", fontsize=7)
        return
    if panel.kind == "barchart-daily":
        day = datetime.fromtimestamp(end, UTC).date().isoformat()
        width = 0.8 / len(series)
        for i, ((name, s), colour) in enumerate(zip(series, palette, strict=True)):
            ax.bar(i * width, float(s["value"][1]), width, color=colour, label=name)
        ax.set_xticks([0.4 - width / 2], [f"{day} (UTC, so far)"])
        ax.set_ylabel(drawn.unit_label)
        _format(ax.yaxis, panel.unit)
        ax.legend(fontsize=7, loc="upper left")
        return
    import matplotlib.dates as mdates

    styles = ("-", "--", ":", "-.")
    for i, ((name, s), colour) in enumerate(zip(series, palette, strict=True)):
        xs = [datetime.fromtimestamp(float(t), UTC) for t, _ in s["values"]]
        ys = [float(v) for _, v in s["values"]]
        ax.plot(xs, ys, label=name, color=colour, linestyle=styles[(i // 10) % len(styles)])
    ax.xaxis.set_major_formatter(
        mdates.DateFormatter("%H:%M" if minutes >= 8 else "%H:%M:%S", tz=UTC)
    )
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel(drawn.unit_label)
    _format(ax.yaxis, panel.unit)
    ax.legend(fontsize=6, loc="upper left", ncol=2 if len(series) > 8 else 1)


def _format(axis: Any, unit: str) -> None:
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _pos: _value(v, unit)))


def _value(v: float, unit: str) -> str:
    if unit == "percentunit":
        return f"{v * 100:.0f}%" if abs(v) >= 0.1 or v == 0 else f"{v * 100:.1f}%"
    if unit == "s":
        return str(timedelta(seconds=round(v))) if v >= 60 else f"{v:.3g} s"
    if unit in ("reqps", "mps"):
        return f"{v:.3g}/s"
    return f"{v:,.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.3g}"


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
    print(render(args.prometheus, args.out, args.minutes).path)


if __name__ == "__main__":
    main()
