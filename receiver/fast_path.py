"""The hot route in plain ASGI: a Verihubs GET callback, the request every provider client
sends most, answered without Starlette's router, exception middleware, Request and
JSONResponse objects (together about half the app's time per callback, bench/run.py).

The steps are the route's own (callbacks.verihubs_get), and so are the answers: a refusal
goes to the app's exception handlers as the route's would, anything else that is raised
reaches Starlette's outermost error middleware (500) as before. The request log and the
metrics around it (RequestLog) see the same route, status and fields. Every other request,
HEAD and POST to the same path included, takes the ordinary way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from receiver import callbacks

PREFIX = "/callbacks/verihubs/"
# The one answer of an accepted callback, rendered once as the route's JSONResponse renders it.
_ACCEPTED = JSONResponse({"status": "accepted", "events": 1})
ACCEPTED_HEADERS, ACCEPTED_BODY = _ACCEPTED.raw_headers, _ACCEPTED.body
Handler = Callable[[Request, Exception], Awaitable[Response]]


class VerihubsFastPath:
    """ASGI middleware, inside RequestLog (and the proxy headers middleware before it)."""

    def __init__(self, app: ASGIApp, route: Route) -> None:
        self.app = app
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = self._match(scope)
        if params is None:
            await self.app(scope, receive, send)
            return
        # What the router would have put in the scope (RequestLog labels by scope["route"]).
        scope["route"], scope["endpoint"] = self.route, self.route.endpoint
        scope["path_params"] = params
        scope.setdefault("router", scope["app"].router)
        try:
            await callbacks.verihubs_get(
                scope["app"].state.ctx, scope, params["product"], params["token"]
            )
        except Exception as exc:
            handler = _handler(scope, exc)
            if handler is None:
                raise
            response = await handler(Request(scope, receive, send), exc)
            await response(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": ACCEPTED_HEADERS})
        await send({"type": "http.response.body", "body": ACCEPTED_BODY})

    @staticmethod
    def _match(scope: Scope) -> dict[str, str] | None:
        """{product, token} of a GET the route matches, as its `{name}` segments do (one or
        more characters other than "/"); None for anything else."""
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
            return None
        path: str = scope["path"]
        if not path.startswith(PREFIX):
            return None
        product, slash, token = path[len(PREFIX) :].partition("/")
        if not product or not slash or not token or "/" in token:
            return None
        return {"product": product, "token": token}


def _handler(scope: Scope, exc: Exception) -> Handler | None:
    """The app's exception handler for `exc`, looked up by class as Starlette's is (the
    catch-all Exception handler is left to its outermost middleware, as for any route)."""
    handlers = scope["app"].exception_handlers
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None
