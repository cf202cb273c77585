"""The console in a real browser: Debian's chromium (`make tools`) driven by Playwright,
against the real web process, a real worker and a private Redis. A person logs in, searches,
opens a message, downloads the billing CSV and replays a failed batch; nothing the providers
sent runs as markup, and the Content-Security-Policy never has to block anything."""

from __future__ import annotations

import csv
import io
from collections import Counter

import httpx2 as httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from core.clock import now_ms
from core.events import Event
from core.settings import Settings
from receiver.queue_writer import QueueWriter
from tests.samples import verihubs_params, verihubs_url
from tests.support import ADMIN, ADMIN_TOKEN, CALLBACK_TOKEN
from tools.stack import Stack, wait_until

CHROMIUM = "/usr/bin/chromium"
APPLIER = "console-applier"
# The worker's Redis user may not write the message keys of ids starting with "z": a batch
# holding one fails for real (NOPERM), until the test grants the key and replays it.
POISONED = "zz-poisoned-1"
MARKUP = "<img src=x onerror=\"document.title='owned'\">"


@pytest.fixture
def stack(redis_server, redis, tmp_path):
    redis.acl_setuser(
        APPLIER, enabled=True, passwords=["+pw"], commands=["+@all"], channels=["*"],
        keys=["~rq:*", "~otp:[^m]*", "~otp:m:*:[^z]*"], reset_keys=True,
    )  # fmt: skip
    stack = Stack(
        redis_server.url, tmp_path, CALLBACK_TOKEN=CALLBACK_TOKEN, ADMIN_TOKEN=ADMIN_TOKEN,
        LOG_LEVEL="warning", JOB_RETRIES="0", WORKER_MAINTENANCE_INTERVAL="1",
    )  # fmt: skip
    stack.start_web()
    stack.start_worker(REDIS_URL=redis_server.url.replace("redis://", f"redis://{APPLIER}:pw@"))
    yield stack
    stack.stop()
    redis.acl_deluser(APPLIER)


@pytest.fixture
def browser_page():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        context = browser.new_context(
            accept_downloads=True, viewport={"width": 1280, "height": 900}
        )
        page = context.new_page()
        problems: list[str] = []
        # A CSP refusal or a script error shows on the browser's console; a dialog would be
        # markup that ran. Answers the test asks for (the wrong token's 401) are not problems.
        page.on("console", lambda m: problems.append(m.text) if _problem(m) else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("dialog", lambda d: problems.append(f"dialog: {d.message}"))
        yield page
        assert problems == []
        browser.close()


def _problem(message) -> bool:
    return message.type == "error" and not message.text.startswith("Failed to load resource")


def send(stack: Stack, session_id: str, *codes: int) -> None:
    for code in codes:
        answer = httpx.get(stack.url + verihubs_url(), params=verihubs_params(session_id, code))
        assert answer.status_code == 200, answer.text


def state(stack: Stack, session_id: str) -> str | None:
    answer = httpx.get(f"{stack.url}/messages/verihubs/{session_id}", headers=ADMIN)
    return answer.json()["state"] if answer.status_code == 200 else None


def log_in(page: Page, stack: Stack, where: str = "/console/messages") -> None:
    page.goto(stack.url + where)
    expect(page).to_have_url(f"{stack.url}/console/login?next={where.replace('/', '%2F')}")
    page.get_by_label("Admin token").fill("wrong-token-" + "x" * 30)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("That is not an admin token.")
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(stack.url + where)


def test_billing_csv_and_replaying_a_failed_batch(stack, browser_page, redis, redis_server):
    page = browser_page
    for n in range(3):
        send(stack, f"b-{n}", 0, 1, 2)
    send(stack, "b-failed", 0, 6)
    wait_until(lambda: state(stack, "b-2") == "delivered" and state(stack, "b-failed") == "failed")
    send(stack, POISONED, 0)  # its batch fails: the worker may not write that message
    wait_until(lambda: redis.zcard("rq:failed:otp-callbacks") == 1, what="the batch to fail")

    log_in(page, stack, "/console/billing")
    expect(page.locator("table.data tfoot")).to_contain_text("3")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    rows = list(csv.reader(io.StringIO(download.value.path().read_text())))
    assert rows[0] == ["day", "provider", "product", "billable"]
    assert [r[1:] for r in rows[1:]] == [["verihubs", "whatsapp-otp", "3"]]

    page.get_by_role("link", name="Queue").click()
    expect(page.locator(".stat", has_text="Failed batches")).to_contain_text("1")
    row = page.locator("table.data tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("no permissions")
    redis.acl_setuser(APPLIER, enabled=True, keys=["~*"])  # the fix
    row.get_by_role("button", name="Replay").click()
    expect(page.get_by_role("status")).to_contain_text("Requeued 1 failed batch")
    wait_until(lambda: state(stack, POISONED) == "requested", what="the replayed batch")
    page.reload()
    expect(page.locator(".stat", has_text="Failed batches")).to_contain_text("0")
    expect(page.get_by_text("No failed batch.")).to_be_visible()

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(stack.url + "/console/login")
    page.goto(stack.url + "/console/queue")
    expect(page).to_have_url(f"{stack.url}/console/login?next=%2Fconsole%2Fqueue")


def test_searching_finding_and_opening_messages(stack, browser_page, redis, redis_server):
    page = browser_page
    send(stack, "s-ok-1", 0, 1, 2, 3)
    send(stack, "s-failed-1", 0, 6)
    send(stack, "s-failed-2", 0, 1, 9)
    # Markup where a provider's strings go, written through the real queue and worker.
    now = now_ms()
    settings = Settings.from_env({"REDIS_URL": redis_server.url})
    QueueWriter(redis, settings).write(
        [Event("verihubs", "whatsapp-otp", MARKUP, 2, now, now, -1, MARKUP)], Counter()
    )
    wait_until(lambda: state(stack, "s-failed-2") == "blocked")
    wait_until(lambda: redis.exists(settings.keys.message("verihubs", MARKUP)) == 1)

    log_in(page, stack)
    rows = page.locator("table.data tbody tr")
    expect(rows).to_have_count(4)
    expect(rows.first).to_contain_text(MARKUP)  # shown as text: the newest message
    assert page.title() != "owned"

    page.get_by_label("State").select_option("blocked")
    page.get_by_label("First received since").fill("1h")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("s-failed-2")
    rows.get_by_role("link", name="s-failed-2").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("s-failed-2")
    expect(page.locator(".stat", has_text="State")).to_contain_text("blocked")
    expect(page.locator("table.timeline tbody tr")).to_have_count(3)

    page.get_by_label("Message id").fill("s-ok-1")
    page.get_by_label("Message id").press("Enter")
    expect(page).to_have_url(stack.url + "/console/messages/verihubs/s-ok-1")
    expect(page.locator(".stat", has_text="Billable")).to_contain_text("yes")
    page.get_by_label("Message id").fill("no-such-id")
    page.get_by_label("Message id").press("Enter")
    expect(page.get_by_text("No provider holds a message with this id")).to_be_visible()

    page.get_by_role("link", name="Scorecard").click()
    expect(page.locator("table.scorecard tbody tr")).to_have_count(1)
    expect(page.locator("table.scorecard")).to_contain_text("whatsapp-otp")
