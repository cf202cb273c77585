"""The console's handlers: a session check, a little parsing, one call into core, a template.

GET pages only read. Every POST (log in, log out, replay) carries a CSRF token that the page
it came from was rendered with; refused input answers a 400 page that says what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import structlog
from redis import RedisError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response

from core import queue_health
from core.failed import Failed
from core.queue import queue
from receiver import admin, body
from receiver.console import session as sessions
from receiver.console.render import HERE, page, secured
from receiver.console.session import Session
from receiver.context import Context
from receiver.errors import Rejected

log = structlog.get_logger("receiver")
FORM_LIMIT = 4096
View = Callable[..., Response]


# The session, CSRF and error pages ---------------------------------------------------------


def view(handler: View) -> Callable[[Request], Any]:
    """A GET page: a session is required (else to the login form); the handler runs in the
    thread pool (Redis calls block)."""

    async def endpoint(request: Request) -> Response:
        current = _session(request)
        if current is None:
            return _to_login(request)
        return await run_in_threadpool(_guarded, handler, request, current)

    return endpoint


def action(handler: View) -> Callable[[Request], Any]:
    """A POST: a session, a same-site origin and the session's CSRF token, then the handler
    with the form's fields."""

    async def endpoint(request: Request) -> Response:
        current = _session(request)
        if current is None:
            return _to_login(request)
        try:
            form = await _form(request)
            if not sessions.same_token(form.get("csrf", ""), current.csrf):
                raise Rejected("csrf", "the form is stale or forged: reload the page", 403)
        except Rejected as exc:
            return _error(request, exc, current)
        return await run_in_threadpool(_guarded, handler, request, current, form)

    return endpoint


def _guarded(handler: View, request: Request, current: Session, *args: Any) -> Response:
    try:
        return handler(request, current, *args)
    except Rejected as exc:
        return _error(request, exc, current)
    except RedisError:
        log.warning("console: redis unavailable", path=request.url.path)
        return _error(request, Rejected("unavailable", "Redis is unreachable", 503), current)


def _error(request: Request, exc: Rejected, current: Session | None) -> Response:
    return page(
        request, "error.html", exc.status_code, session=current, status=exc.status_code,
        message=exc.message,
    )  # fmt: skip


def ctx_of(request: Request) -> Context:
    return request.app.state.ctx


def _session(request: Request) -> Session | None:
    tokens = ctx_of(request).credentials.admin_tokens
    return sessions.read_session(request.cookies.get(sessions.COOKIE), tokens)


def _to_login(request: Request) -> Response:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return secured(RedirectResponse("/console/login?" + urlencode({"next": here}), 303))


async def _form(request: Request) -> dict[str, str]:
    _same_site(request)
    kind = request.headers.get("content-type", "")
    raw = await body.read(request, FORM_LIMIT)
    if raw and not kind.startswith("application/x-www-form-urlencoded"):
        raise Rejected("invalid_body", "expected a form (application/x-www-form-urlencoded)")
    return body.form_fields(raw, kind, max_depth=1)


def _same_site(request: Request) -> None:
    """Browsers send Origin with every POST: one from another host is refused before anything
    else (the CSRF token would refuse it too). Hosts are compared without ports: a proxy in
    front may pass `Host` without one."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    host = request.headers.get("host", "").rsplit(":", 1)[0].strip("[]").lower()
    if (urlsplit(origin).hostname or "") != host:
        raise Rejected("cross_origin", "cross-site requests are refused", 403)


def _cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path=sessions.PATH, httponly=True, samesite="strict",
        secure=request.url.scheme == "https",
    )  # fmt: skip


def _safe_next(target: str | None) -> str:
    """Only a console page of this site: never an open redirect."""
    if (
        target
        and len(target) <= 1000
        and target.startswith("/console")
        and not target.startswith("//")
        and "\\" not in target
        and not any(ord(c) < 33 for c in target)
    ):
        return target
    return "/console/messages"


# Logging in and out -------------------------------------------------------------------------


async def home(request: Request) -> Response:
    return secured(RedirectResponse("/console/messages", 303))


async def login_form(request: Request) -> Response:
    return _login_page(request, None, 200, request.query_params.get("next"))


def _login_page(request: Request, error: str | None, status: int, after: str | None) -> Response:
    closed = ctx_of(request).credentials.admin_tokens is None
    token = sessions.new_login_token()
    response = page(
        request, "login.html", 403 if closed else status, session=None, closed=closed,
        error=error, csrf=token, next=_safe_next(after),
    )  # fmt: skip
    _cookie(response, request, sessions.LOGIN_COOKIE, token, 3600)
    return response


async def login(request: Request) -> Response:
    ctx = ctx_of(request)
    form: dict[str, str] = {}
    try:
        form = await _form(request)
        expected = request.cookies.get(sessions.LOGIN_COOKIE, "")
        if not sessions.same_token(form.get("csrf", ""), expected):
            raise Rejected("csrf", "the login form expired: try again", 403)
        token = form.get("token", "").strip()
        ctx.guard.check_admin_token(request, ctx.credentials.admin_tokens, token)
    except Rejected as exc:
        log.info("console login refused", reason=exc.reason)
        # The guard speaks of bearer headers; a person typed the token into a form.
        message = "That is not an admin token." if exc.status_code == 401 else exc.message
        return _login_page(request, message, exc.status_code, form.get("next"))
    _, value = sessions.open_session(token)
    response = secured(RedirectResponse(_safe_next(form.get("next")), 303))
    _cookie(response, request, sessions.COOKIE, value, sessions.MAX_AGE_SECONDS)
    response.delete_cookie(sessions.LOGIN_COOKIE, path=sessions.PATH)
    log.info("console login")
    return response


@action
def logout(request: Request, current: Session, form: dict[str, str]) -> Response:
    response = secured(RedirectResponse("/console/login", 303))
    response.delete_cookie(sessions.COOKIE, path=sessions.PATH)
    return response


# Billing ------------------------------------------------------------------------------------


def _billing_query(request: Request) -> tuple[Any, Any, Any, dict[str, str]]:
    ctx = ctx_of(request)
    params = dict(request.query_params)
    params = {k: v.strip() for k, v in params.items() if k in ("month", "from", "to", "tz")}
    params = {k: v for k, v in params.items() if v}
    if not {"month", "from", "to"} & set(params):  # the console opens on this month
        tz_default = admin.billing_query({"tz": params["tz"]} if "tz" in params else {},
                                         ctx.settings.billing_timezone)[2]  # fmt: skip
        params["month"] = datetime.now(tz_default).strftime("%Y-%m")
    start, end, tz = admin.billing_query(params, ctx.settings.billing_timezone)
    return start, end, tz, params


@view
def billing(request: Request, current: Session) -> Response:
    start, end, tz, params = _billing_query(request)
    rows = ctx_of(request).reader.billing(start, end, tz)
    columns = sorted({(r.provider, r.product) for r in rows})
    days: dict[Any, dict[tuple[str, str], int]] = {}
    for row in rows:
        days.setdefault(row.day, {})[row.provider, row.product] = row.billable
    totals = {c: sum(r.billable for r in rows if (r.provider, r.product) == c) for c in columns}
    return page(
        request, "billing.html", session=current, start=start, end=end, tz=tz.key,
        month=params.get("month", ""), columns=columns, days=sorted(days.items()),
        totals=totals, total=sum(totals.values()),
        csv_url="/console/billing.csv?" + urlencode(params),
    )  # fmt: skip


@view
def billing_csv(request: Request, current: Session) -> Response:
    start, end, tz, _ = _billing_query(request)
    return secured(
        admin.billing_csv(ctx_of(request).reader.billing(start, end, tz), start, end, tz)
    )


# The queue and failed batches ---------------------------------------------------------------


def _failed(ctx: Context) -> Failed:
    return Failed(ctx.redis, ctx.settings.queue_name)


@view
def queue_page(request: Request, current: Session) -> Response:
    ctx = ctx_of(request)
    replayed = request.query_params.get("replayed", "")
    return page(
        request, "queue.html", session=current,
        health=queue_health.health(queue(ctx.redis, ctx.settings), ctx.settings.keys),
        failed=_failed(ctx).list(), replayed=int(replayed) if replayed.isdigit() else None,
    )  # fmt: skip


@action
def replay(request: Request, current: Session, form: dict[str, str]) -> Response:
    failed = _failed(ctx_of(request))
    if form.get("all") == "1":
        count = failed.replay_all()
    else:
        job_id = form.get("job_id", "")
        try:
            failed.replay(job_id)
        except LookupError as exc:
            raise Rejected("no_such_batch", "no failed batch with this id (replayed already?)",
                           404) from exc  # fmt: skip
        count = 1
    log.info("console replay", batches=count)
    return secured(RedirectResponse(f"/console/queue?replayed={count}", 303))


async def static(request: Request) -> Response:
    """The console's own files, by an allowlist of names: no path from the request reaches
    the file system."""
    name = request.path_params["name"]
    if name not in STATIC_FILES:
        return secured(Response("not found", 404, media_type="text/plain"))
    return secured(FileResponse(HERE / "static" / name, media_type=STATIC_FILES[name]))


STATIC_FILES = {"console.css": "text/css", "favicon.svg": "image/svg+xml"}
