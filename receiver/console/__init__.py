"""The web console for support staff and on-call, under /console: server-rendered pages over
the same read side as the admin API (core.read, core.scorecard, core.failed), behind the
admin token through a login form and a signed session cookie."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from receiver.console import messages, pages, scores

PREFIX = "/console"


def routes() -> list[BaseRoute]:
    return [
        Route(PREFIX, pages.home),
        Route(f"{PREFIX}/login", pages.login_form, methods=["GET"]),
        Route(f"{PREFIX}/login", pages.login, methods=["POST"]),
        Route(f"{PREFIX}/logout", pages.logout, methods=["POST"]),
        Route(f"{PREFIX}/messages", messages.messages),
        Route(f"{PREFIX}/find", messages.find),
        Route(f"{PREFIX}/messages/{{provider}}/{{message_id:path}}", messages.message),
        Route(f"{PREFIX}/scorecard", scores.scores),
        Route(f"{PREFIX}/billing", pages.billing),
        Route(f"{PREFIX}/billing.csv", pages.billing_csv),
        Route(f"{PREFIX}/queue", pages.queue_page),
        Route(f"{PREFIX}/queue/replay", pages.replay, methods=["POST"]),
        Route(f"{PREFIX}/static/{{name}}", pages.static),
    ]
