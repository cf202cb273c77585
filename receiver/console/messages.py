"""The console's message pages: find by id across providers, one message's timeline, and
the recent messages with filters (core.read's search, paginated by cursor)."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from core import model, timeparse
from core.clock import now_ms
from core.products import PRODUCTS
from core.settings import PROVIDERS
from receiver.console.pages import ctx_of, view
from receiver.console.render import page, secured
from receiver.console.session import Session
from receiver.errors import Rejected
from receiver.providers import fields

PAGE_SIZE = 50
STATES = (*(s.value for s in model.PRECEDENCE), model.NO_STATE)
PRODUCT_NAMES = tuple(sorted({name for _, name in PRODUCTS}))


def message_url(provider: str, message_id: str) -> str:
    return f"/console/messages/{quote(provider, safe='')}/{quote(message_id, safe='/')}"


@view
def find(request: Request, current: Session) -> Response:
    given = request.query_params.get("id", "").strip()
    message_id = fields.message_id(given, "id")
    views = ctx_of(request).reader.find(message_id)
    if len(views) == 1:
        return secured(RedirectResponse(message_url(views[0].provider, message_id), 303))
    return page(
        request, "find.html", 200 if views else 404, session=current, message_id=message_id,
        views=views, url=message_url,
    )  # fmt: skip


@view
def message(request: Request, current: Session) -> Response:
    provider = request.path_params["provider"]
    if provider not in PROVIDERS:
        raise Rejected("unknown_provider", f"unknown provider (one of {', '.join(PROVIDERS)})", 404)
    message_id = fields.message_id(request.path_params["message_id"], "message id")
    found = ctx_of(request).reader.message(provider, message_id)
    if found is None:
        raise Rejected("message_not_found", "no callback was seen for this message", 404)
    return page(request, "message.html", session=current, view=found)


@view
def messages(request: Request, current: Session) -> Response:
    params = request.query_params
    chosen = {
        "provider": _choice(params, "provider", PROVIDERS),
        "product": _choice(params, "product", PRODUCT_NAMES),
        "state": _choice(params, "state", STATES),
    }
    now = now_ms()
    since_text, until_text = params.get("since", "").strip(), params.get("until", "").strip()
    since, until = _moment(since_text, now, "since"), _moment(until_text, now, "until")
    if since is not None and until is not None and since >= until:
        raise Rejected("invalid_range", "since must be before until")
    cursor = params.get("cursor") or None
    try:
        found = ctx_of(request).reader.search(
            providers=_one(chosen["provider"]), products=_one(chosen["product"]),
            states=_one(chosen["state"]), since_ms=since, until_ms=until, limit=PAGE_SIZE,
            cursor=cursor,
        )  # fmt: skip
    except ValueError as exc:
        raise Rejected("invalid_cursor", "the page cursor is not valid: start again") from exc
    filters = {**chosen, "since": since_text, "until": until_text}
    query = {k: v for k, v in filters.items() if v}
    next_url = None
    if found.next_cursor:
        next_url = "/console/messages?" + urlencode({**query, "cursor": found.next_cursor})
    return page(
        request, "messages.html", session=current, page_=found, filters=filters,
        providers=PROVIDERS, products=PRODUCT_NAMES, states=STATES, next_url=next_url,
        url=message_url, first_page=cursor is None,
        first_url="/console/messages?" + urlencode(query),
    )  # fmt: skip


def _choice(params: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    value = params.get(name, "").strip()
    if value and value not in allowed:
        raise Rejected(f"invalid_{name}", f"unknown {name} (one of {', '.join(allowed)})")
    return value


def _one(value: str) -> tuple[str, ...]:
    return (value,) if value else ()


def _moment(text: str, now: int, name: str) -> int | None:
    if not text:
        return None
    try:
        return timeparse.moment(text, now)
    except ValueError as exc:
        raise Rejected(
            f"invalid_{name}",
            f"{name}: {exc} (an ISO 8601 time with its offset, or a duration before now:"
            " 15m, 1h, 7d)",
        ) from exc
