"""The web console through the real app (in-process) and a real Redis: its login, session
cookie and CSRF checks, its headers, and each page's answers to good and bad input."""

from __future__ import annotations

import re

import pytest

from core.failed import Failed
from core.queue import queue
from receiver.console import session as sessions
from receiver.console.render import CSP
from tests import batches as failing_batches
from tests.samples import verihubs_params, verihubs_url
from tests.support import ADMIN_TOKEN, make_settings, metric, run_jobs

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
FORM = {"content-type": "application/x-www-form-urlencoded"}


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, html
    return match.group(1)


def log_in(client, token: str = ADMIN_TOKEN, next_page: str = "/console/billing"):
    form = client.get(f"/console/login?next={next_page}")
    assert form.status_code == 200
    return client.post(
        "/console/login",
        data={"csrf": csrf_of(form.text), "token": token, "next": next_page},
        follow_redirects=False,
    )


@pytest.fixture
def console(app_client):
    client = app_client()
    assert log_in(client).status_code == 303
    return client


def test_pages_need_a_session_and_send_to_the_login_form(app_client):
    client = app_client()
    for path in ("/console/billing", "/console/queue", "/console/billing.csv"):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/console/login?next=%2Fconsole%2F")
    # No session either with the admin token as a bearer header: the console is for browsers.
    answer = client.get(
        "/console/queue", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, follow_redirects=False
    )
    assert answer.status_code == 303


def test_login_sets_a_strict_http_only_session_cookie_and_goes_where_asked(app_client):
    client = app_client()
    answer = log_in(client, next_page="/console/queue")
    assert answer.status_code == 303 and answer.headers["location"] == "/console/queue"
    cookie = next(
        c for c in answer.headers.get_list("set-cookie") if c.startswith(sessions.COOKIE + "=")
    )
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/console"} <= flags
    assert "secure" not in flags  # served over http here
    assert client.get("/console/queue").status_code == 200


def test_the_cookie_is_secure_over_https(app_client):
    client = app_client()
    client.base_url = "https://testserver"
    answer = log_in(client)
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("otp_console="))
    assert "secure" in cookie.lower()


def test_a_wrong_token_is_refused_counted_and_throttled(app_client):
    client = app_client(AUTH_FAILURES_PER_MINUTE="2")
    answer = log_in(client, token="x" * 40)
    assert answer.status_code == 401
    assert "That is not an admin token." in answer.text
    assert sessions.COOKIE + "=" not in answer.headers.get("set-cookie", "")
    assert log_in(client, token="").status_code == 401
    # The source is throttled now: even the right token is not compared.
    assert log_in(client).status_code == 429
    assert metric(client, "otp_admin_rejected_total", reason="bad_admin_token") == 2
    assert metric(client, "otp_admin_rejected_total", reason="throttled") == 1


def test_login_without_its_form_token_is_refused(app_client):
    client = app_client()
    answer = client.post(
        "/console/login", data={"csrf": "forged", "token": ADMIN_TOKEN}, follow_redirects=False
    )
    assert answer.status_code == 403
    assert sessions.COOKIE + "=" not in answer.headers.get("set-cookie", "")


def test_the_console_is_closed_without_an_admin_token(redis_server, store):
    from prometheus_client import CollectorRegistry
    from starlette.testclient import TestClient

    from receiver.app import create_app

    settings = make_settings(redis_server.url, ADMIN_TOKEN="")
    with TestClient(create_app(settings, CollectorRegistry())) as client:
        answer = client.get("/console/login")
        assert answer.status_code == 403 and "ADMIN_TOKEN" in answer.text


@pytest.mark.parametrize(
    "cookie",
    [
        "",
        "garbage",
        "1.2.3",
        # Signed with a token that is not configured (one removed in a rotation).
        sessions.open_session("another-admin-token-0123456789abcdef")[1],
        # Expired.
        sessions.open_session(ADMIN_TOKEN, now=1_000_000)[1],
    ],
)
def test_a_forged_expired_or_foreign_cookie_is_no_session(app_client, cookie):
    client = app_client()
    client.cookies.set(sessions.COOKIE, cookie, path="/console")
    assert client.get("/console/queue", follow_redirects=False).status_code == 303


def test_a_token_rotation_keeps_sessions_of_every_configured_token(app_client):
    other = "rotated-admin-token-0123456789abcdefgh"
    client = app_client(ADMIN_TOKEN=f"{ADMIN_TOKEN},{other}")
    client.cookies.set(sessions.COOKIE, sessions.open_session(other)[1], path="/console")
    assert client.get("/console/queue", follow_redirects=False).status_code == 200


def test_every_post_needs_the_sessions_csrf_token(console):
    for path, data in [
        ("/console/logout", {}),
        ("/console/queue/replay", {"all": "1"}),
    ]:
        for token in (None, "forged"):
            fields = {**data, **({"csrf": token} if token else {})}
            answer = console.post(path, data=fields, follow_redirects=False)
            assert answer.status_code == 403, path
            assert "stale or forged" in answer.text
    # Another site's form, even with the right token, is refused.
    token = csrf_of(console.get("/console/queue").text)
    answer = console.post(
        "/console/logout",
        data={"csrf": token},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert answer.status_code == 403
    # Still logged in after all that.
    assert console.get("/console/queue", follow_redirects=False).status_code == 200


def test_logout_ends_the_session(console):
    token = csrf_of(console.get("/console/queue").text)
    answer = console.post("/console/logout", data={"csrf": token}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/login"
    assert console.get("/console/queue", follow_redirects=False).status_code == 303


def test_every_console_answer_has_a_strict_content_security_policy(console):
    for path in ("/console/login", "/console/billing", "/console/queue", "/console/billing?tz=x"):
        answer = console.get(path)
        assert answer.headers["content-security-policy"] == CSP, path
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-store"
        # No inline script or style for the policy to have to allow.
        assert "<script" not in answer.text and "style=" not in answer.text
        assert "<style" not in answer.text
    assert "default-src 'self'" in CSP and "frame-ancestors 'none'" in CSP
    assert "unsafe-inline" not in CSP
    css = console.get("/console/static/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_billing_by_month_and_zone_with_its_csv(console, store, redis, settings):
    # 2 billed messages, one not billed (failed).
    for session_id, codes in [("b-1", (0, 2)), ("b-2", (0, 1)), ("b-3", (0, 6))]:
        for code in codes:
            assert (
                console.get(verihubs_url(), params=verihubs_params(session_id, code)).status_code
                == 200
            )
    run_jobs(redis, settings)
    page = console.get("/console/billing")
    assert page.status_code == 200
    assert "verihubs" in page.text and "whatsapp-otp" in page.text
    assert "Total: <strong>2</strong>" in page.text
    page = console.get("/console/billing", params={"tz": "Asia/Jakarta"})
    assert "Asia/Jakarta" in page.text
    csv = console.get("/console/billing.csv", params={"tz": "Asia/Jakarta"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.headers["content-disposition"].startswith('attachment; filename="billing-')
    lines = csv.text.strip().splitlines()
    assert lines[0] == "day,provider,product,billable"
    assert lines[1].endswith(",verihubs,whatsapp-otp,2")


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ({"tz": "Mars/Olympus"}, "unknown time zone"),
        ({"month": "2026-13"}, "month must be YYYY-MM"),
        ({"month": "<b>x</b>"}, "month must be YYYY-MM"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "from must not be after to"),
        ({"month": "2026-01", "from": "2026-01-01"}, "not both"),
    ],
)
def test_bad_billing_input_is_a_400_page_that_says_why(console, query, says):
    for path in ("/console/billing", "/console/billing.csv"):
        answer = console.get(path, params=query)
        assert answer.status_code == 400, (path, answer.text)
        assert says in answer.text
        assert answer.headers["content-type"].startswith("text/html")
        assert "<b>" not in answer.text


def test_queue_health_and_replaying_failed_batches(console, redis, failing, store):
    events = [failing_batches.event(f"q-{n}") for n in range(3)]
    first = failing_batches.fail_batch(redis, failing, events, poisoned="q-1")
    page = console.get("/console/queue")
    assert page.status_code == 200
    assert first in page.text and "no permissions" in page.text
    assert re.search(r"Failed batches</span><strong>1<", page.text)
    failing_batches.fix_acl(redis)
    token = csrf_of(page.text)
    answer = console.post(
        "/console/queue/replay", data={"csrf": token, "job_id": first}, follow_redirects=False
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/console/queue?replayed=1"
    assert Failed(redis, failing.queue_name).list() == []
    assert queue(redis, failing).job_ids == [first]
    assert "Requeued 1 failed batch:" in console.get(answer.headers["location"]).text
    # Replaying it again: it is no longer failed.
    again = console.post("/console/queue/replay", data={"csrf": token, "job_id": first})
    assert again.status_code == 404 and "no failed batch" in again.text
    # A bad id is a 404 page too, never a 500.
    odd = console.post("/console/queue/replay", data={"csrf": token, "job_id": "<x>" * 40})
    assert odd.status_code == 404


def test_replay_all(console, redis, failing, store):
    for n in range(2):
        failing_batches.fail_batch(redis, failing, [failing_batches.event(f"a-{n}")], f"a-{n}")
    assert len(Failed(redis, failing.queue_name).list()) == 2
    failing_batches.fix_acl(redis)
    token = csrf_of(console.get("/console/queue").text)
    answer = console.post("/console/queue/replay", data={"csrf": token, "all": "1"})
    assert answer.status_code == 200 and "Requeued 2 failed batches" in answer.text
    assert len(queue(redis, failing).job_ids) == 2


def test_a_form_that_is_not_a_form_or_too_big_is_refused(console):
    token = csrf_of(console.get("/console/queue").text)
    answer = console.post("/console/queue/replay", content=b'{"all": 1}',
                          headers={"content-type": "application/json"})  # fmt: skip
    assert answer.status_code == 400 and "expected a form" in answer.text
    answer = console.post("/console/queue/replay", data={"csrf": token, "job_id": "x" * 10_000})
    assert answer.status_code == 413


def test_redis_away_is_a_503_page(console, redis_server):
    redis_server.stop()
    try:
        answer = console.get("/console/queue")
        assert answer.status_code == 503 and "Redis is unreachable" in answer.text
    finally:
        redis_server.start()


# Messages: search, find, one message's timeline; provider strings inert.

MARKUP_ID = '<img src=x onerror="alert(1)">'
MARKUP_STATUS = "<script>alert('status')</script>"


def seed(store, message_id, *codes, provider="verihubs", product="whatsapp-otp", raw=""):
    from core.clock import now_ms
    from core.events import Event

    now = now_ms()
    events = [
        Event(provider, product, message_id, code, now + i, now + i, -1, raw)
        for i, code in enumerate(codes)
    ]
    store.apply(f"b-{message_id}-{codes}", events)


def test_search_filters_and_pages_by_cursor(console, store, monkeypatch):
    from receiver.console import messages

    monkeypatch.setattr(messages, "PAGE_SIZE", 2)
    for n in range(3):
        seed(store, f"ok-{n}", 0, 1, 2)
    seed(store, "bad-1", 0, 6)
    page = console.get("/console/messages")
    assert page.status_code == 200
    assert page.text.count('class="id"') == 2 and "ok-2" in page.text  # newest first
    older = re.search(r'href="(/console/messages\?cursor=[^"]+)"', page.text)
    assert older, page.text
    second = console.get(older.group(1).replace("&amp;", "&"))
    assert second.status_code == 200 and "ok-0" in second.text and "ok-2" not in second.text
    failed = console.get("/console/messages", params={"state": "failed", "since": "1h"})
    assert "bad-1" in failed.text and "ok-1" not in failed.text
    none = console.get("/console/messages", params={"product": "sms-otp"})
    assert "No message matches" in none.text


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ({"state": "lost"}, "unknown state"),
        ({"provider": "<b>vonage</b>"}, "unknown provider"),
        ({"since": "yesterday"}, "neither a duration"),
        ({"since": "1h", "until": "2h"}, "since must be before until"),
        ({"cursor": "not-a-cursor"}, "cursor is not valid"),
    ],
)
def test_bad_search_input_is_a_400_page(console, query, says):
    answer = console.get("/console/messages", params=query)
    assert answer.status_code == 400 and says in answer.text
    assert "<b>" not in answer.text


def test_find_by_id_across_providers_and_the_timeline(console, store):
    seed(store, "shared-1", 0, 1, 2, 3)
    answer = console.get("/console/find", params={"id": "shared-1"}, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/messages/verihubs/shared-1"
    page = console.get(answer.headers["location"])
    assert page.status_code == 200
    for text in ("shared-1", "read", "Billable</span><strong>yes", "Timeline", "new"):
        assert text in page.text
    assert page.text.count("<tr>") >= 4 + 4  # four history rows, four statuses
    seed(store, "shared-1", 1, 2, provider="meta", product="whatsapp", raw="delivered")
    both = console.get("/console/find", params={"id": "shared-1"})
    assert both.status_code == 200 and "2 providers hold" in both.text
    missing = console.get("/console/find", params={"id": "nobody"})
    assert missing.status_code == 404 and "No provider holds" in missing.text
    assert console.get("/console/find", params={"id": "a b"}).status_code == 400
    assert console.get("/console/messages/verihubs/nobody").status_code == 404
    assert console.get("/console/messages/vonage/x").status_code == 404


def test_provider_strings_render_as_text_never_markup(console, store):
    """Ids and statuses as a provider (or anyone who can write to Redis) could send them:
    every page shows them escaped."""
    seed(store, MARKUP_ID, 0, 2, raw=MARKUP_STATUS)
    seed(store, "plain-1", 0, 99, raw=MARKUP_STATUS)  # an unknown code, its status as sent
    pages = [
        console.get("/console/messages"),
        console.get("/console/messages/verihubs/plain-1"),
        console.get("/console/find", params={"id": MARKUP_ID}),
        console.get("/console/messages", params={"since": MARKUP_STATUS}),
    ]
    for page in pages:
        assert "<img" not in page.text and "<script" not in page.text, page.text
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in pages[0].text
    assert "&lt;script&gt;alert(&#39;status&#39;)&lt;/script&gt;" in pages[1].text
