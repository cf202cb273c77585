"""Screenshots of the console's main pages for the README (docs/console-*.png): the real web
process and worker on a private Redis, fed by the callback simulator, photographed by
Debian's chromium through Playwright.

    python -m tools.console_screenshots   # needs chromium (make tools) and redis-server
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import httpx2 as httpx
from nacl.signing import SigningKey
from playwright.sync_api import sync_playwright
from redis import Redis

from core.embedded import RedisServer
from tools.simulate import Simulator, public_key
from tools.stack import ROOT, Stack, wait_until

# A throwaway Redis and stack: a fixed token makes the login screenshot repeatable.
TOKEN = "screenshot-admin-token-0123456789abcdef"  # noqa: S105
CALLBACKS = "screenshot-callback-token-0123456789ab"
APPLIER = "shots-applier"
DOCS = ROOT / "docs"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis", durable=False).start()
        redis = Redis.from_url(server.url)
        key = SigningKey.generate()
        stack = Stack(
            server.url, Path(tmp), CALLBACK_TOKEN=CALLBACKS, ADMIN_TOKEN=TOKEN,
            TELNYX_PUBLIC_KEY=public_key(key), LOG_LEVEL="warning", JOB_RETRIES="0",
        )  # fmt: skip
        try:
            _traffic(stack, redis, server.url, key)
            _photograph(stack.url)
        finally:
            stack.stop()
            server.stop()


def _traffic(stack: Stack, redis: Redis, url: str, key: SigningKey) -> None:
    stack.start_web()
    stack.start_worker()
    simulator = Simulator(stack.url, CALLBACKS, rate=25, speed=4, telnyx_key=key)
    print(dict(asyncio.run(simulator.run(25))))
    # Two batches failed for real: a second worker whose Redis user may not write one key.
    redis.acl_setuser(
        APPLIER, enabled=True, passwords=["+pw"], commands=["+@all"], channels=["*"],
        keys=["~rq:*", "~otp:[^m]*", "~otp:m:*:[^z]*"], reset_keys=True,
    )  # fmt: skip
    stack.stop()
    stack.workers = []
    stack.start_web()
    stack.start_worker(REDIS_URL=url.replace("redis://", f"redis://{APPLIER}:pw@"))
    for session in ("zz-0c1f7e2a", "zz-51b9d4e0"):
        path = f"/callbacks/verihubs/whatsapp-otp/{CALLBACKS}"
        httpx.get(stack.url + path, params={"session_id": session, "status": "0"})
        wait_until(lambda: redis.zcard("rq:failed:otp-callbacks") >= 1, what="a failed batch")
    wait_until(lambda: redis.zcard("rq:failed:otp-callbacks") == 2, what="two failed batches")


def _photograph(url: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        page = browser.new_page(viewport={"width": 1360, "height": 860}, device_scale_factor=1)
        page.goto(url + "/console/login")
        page.screenshot(path=DOCS / "console-login.png")
        page.get_by_label("Admin token").fill(TOKEN)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(url + "/console/messages")
        page.screenshot(path=DOCS / "console-messages.png")
        page.get_by_label("State").select_option("read")
        page.get_by_role("button", name="Search").click()
        page.locator("table.data tbody tr td.id a").first.click()
        page.screenshot(path=DOCS / "console-message.png", full_page=True)
        page.goto(url + "/console/scorecard?window=1h")
        page.screenshot(path=DOCS / "console-scorecard.png")
        page.goto(url + "/console/billing")
        page.screenshot(path=DOCS / "console-billing.png")
        page.goto(url + "/console/queue")
        page.screenshot(path=DOCS / "console-queue.png")
        browser.close()


if __name__ == "__main__":
    main()
