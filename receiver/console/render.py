"""Pages: Jinja2 templates rendered with autoescape on, and the headers every console answer
carries (a strict Content-Security-Policy: the pages have no script and no inline style)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from core import model

HERE = Path(__file__).parent
NONE = "\N{EN DASH}"  # shown for a figure that does not exist
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self';"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Not no-referrer: with it, browsers send `Origin: null` on the forms' own POSTs.
    "Referrer-Policy": "same-origin",
    # Pages show messages and billing: no copy left in a shared cache or the browser's.
    "Cache-Control": "no-store",
}


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        # Every provider string (ids, statuses, errors) reaches the page escaped.
        autoescape=select_autoescape(["html"], default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = percent
    env.filters["seconds"] = seconds
    env.filters["when"] = when
    env.filters["tone"] = tone
    return env


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    body = (
        environment()
        .get_template(template)
        .render(request=request, nav=_active(request), **context)
    )
    return secured(HTMLResponse(body, status_code))


def secured(response: Response) -> Response:
    response.headers.update(HEADERS)
    return response


def percent(value: float | None) -> str:
    return NONE if value is None else f"{value * 100:.1f}%"


def seconds(value: float | None) -> str:
    if value is None:
        return NONE
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def when(value: str | None) -> str:
    """An ISO time as people read it: `2026-12-01 11:43:02 UTC` (ms kept where given)."""
    if not value:
        return NONE
    text = value.replace("T", " ")
    for utc in ("+00:00", "Z"):
        if text.endswith(utc):
            return text.removesuffix(utc) + " UTC"
    return text


GOOD = frozenset(s.value for s in model.DELIVERY_EVIDENCE)
BAD = frozenset(s.value for s in model.FAILURES)


def tone(state: str | None) -> str:
    """The badge colour of a state or an outcome (a CSS class of console.css)."""
    if state in GOOD or state == model.Outcome.NEW:
        return "good"
    if state in BAD or state == model.Outcome.MISMATCH:
        return "bad"
    if state in (model.Status.UNVERIFIED, model.Status.NO_DELIVERY_REPORT, model.Outcome.LATE,
                 model.Outcome.UNKNOWN):  # fmt: skip
        return "warn"
    return "plain"


def _active(request: Request) -> str:
    parts = request.url.path.removeprefix("/console").strip("/").split("/")
    return parts[0] or "messages"
