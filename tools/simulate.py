"""A simulator of Verihubs WhatsApp and SMS OTP callbacks, and of Telnyx Verify, Meta and Twilio
webhooks signed as each provider signs them: realistic lifecycles, mixed outcomes,
duplicates, reordering, unknown codes, a few callbacks on another product's URL (a
misconfigured callback_url) and a few malformed requests.

    .venv/bin/otp-tracker simulate --seconds 60 --rate 20      (tools/cli: secrets found)
    python -m tools.simulate --url http://127.0.0.1:8000 --token "$(cat var/callback_token)"
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import heapq
import hmac
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx2 as httpx
from nacl.signing import SigningKey
from twilio.request_validator import RequestValidator

# (weight, codes in order) per product; codes are Verihubs WhatsApp status codes.
OTP_LIFECYCLES = [
    (45, [0, 1, 2, 3, 4]),  # read, then verified
    (15, [0, 1, 2, 4]),  # verified without a read receipt
    (12, [0, 1, 2, 3, 5]),  # OTP expired unverified
    (8, [0, 1, 2]),  # delivered, never opened
    (6, [0, 6]),  # failed
    (4, [0, 1, 9]),  # blocked
    (3, [0, 8]),  # rejected: too many requests
    (2, [0, 10]),  # tier limit exceeded
    (2, [0, 7]),  # request error
    (3, [0, 1, 6, 2]),  # failed on one device, delivered on another: conflict
]
MESSAGE_LIFECYCLES = [
    (55, [0, 1, 2, 3]),
    (20, [0, 1, 2]),
    (10, [0, 6]),
    (5, [0, 1, 9]),
    (5, [0, 11]),
    (5, [0, 1]),
]
SMS_LIFECYCLES = [  # Verihubs SMS OTP numbering
    (50, [0, 1, 2]),  # delivered, verified
    (15, [0, 1, 3]),  # delivered, not verified
    (10, [0, 1]),
    (8, [0, 7]),  # undelivered
    (7, [0, 8]),  # no delivery report
    (5, [0, 4]),  # failed
    (5, [0, 9]),  # blocked
]
TABLES = {
    "whatsapp-otp": OTP_LIFECYCLES,
    "whatsapp-message": MESSAGE_LIFECYCLES,
    "sms-otp": SMS_LIFECYCLES,
}
PRODUCT_SHARES = {"whatsapp-otp": 60, "whatsapp-message": 25, "sms-otp": 15}
TELNYX_LIFECYCLES = [
    (60, ["verify.sent", "verify.delivered", "verification.complete"]),
    (20, ["verify.sent", "verify.delivered"]),
    (12, ["verify.sent", "verify.failed"]),
    (8, ["verify.sent"]),
]
TELNYX, META, TWILIO, VERIHUBS = "telnyx", "meta", "twilio", "verihubs"
PROVIDERS = (VERIHUBS, TELNYX, META, TWILIO)
# New messages per provider, among the providers simulated.
PROVIDER_SHARES = {VERIHUBS: 55, TELNYX: 15, META: 15, TWILIO: 15}
# Meta's status names ("Parameters" of the status webhook reference, README's sources).
META_LIFECYCLES = [
    (55, ["sent", "delivered", "read"]),
    (20, ["sent", "delivered"]),
    (10, ["sent", "failed"]),
    (10, ["sent"]),
    (5, ["sent", "delivered", "played"]),
]
# Twilio's MessageStatus values per channel ([tw-status] in the README).
TWILIO_LIFECYCLES = {
    "whatsapp": [
        (55, ["queued", "sent", "delivered", "read"]),
        (20, ["queued", "sent", "delivered"]),
        (10, ["queued", "sent", "undelivered"]),
        (10, ["queued", "failed"]),
        (5, ["queued", "sent"]),
    ],
    "sms": [
        (70, ["queued", "sent", "delivered"]),
        (15, ["queued", "sent", "undelivered"]),
        (10, ["queued", "failed"]),
        (5, ["queued", "sent"]),
    ],
}
# Seconds from the previous callback, by WhatsApp code; SMS steps take DEFAULT_STEP.
DEFAULT_STEP = (0.5, 4.0)
STEP_SECONDS = {1: (0.2, 1.0), 2: (0.5, 4.0), 3: (1.0, 10.0), 4: (3.0, 20.0), 5: (20.0, 40.0)}


@dataclass(order=True)
class Callback:
    due: float
    # A Verihubs product, or the provider's name for the others.
    product: str = field(compare=False)
    params: dict[str, str] = field(compare=False)
    # What the receiver must answer: 200, or 400 for the malformed ones sent on purpose.
    expect: int = field(default=200, compare=False)

    @property
    def provider(self) -> str:
        return self.product if self.product in PROVIDERS else VERIHUBS


@dataclass
class Simulator:
    url: str
    token: str
    rate: float = 20.0
    speed: float = 1.0
    duplicate_share: float = 0.05
    reorder_share: float = 0.1
    # With the Telnyx account's signing key, some messages are Telnyx verifications; with
    # Meta's app secret, Meta messages; with Twilio's auth token, Twilio messages.
    telnyx_key: SigningKey | None = None
    meta_secret: str | None = None
    twilio_token: str | None = None
    # The URL Twilio signs over: the receiver's PUBLIC_URL, if it has one, + the path.
    public_url: str | None = None
    # A Verihubs product's own token (CALLBACK_TOKEN_<PRODUCT>), where it has one.
    product_tokens: dict[str, str] = field(default_factory=dict)
    # Only these providers, of those whose secret is given (None: every one of them).
    providers: tuple[str, ...] | None = None
    rng: random.Random = field(default_factory=random.Random)
    sent: Counter[int] = field(default_factory=Counter)
    # (provider, status code or "error") -> callbacks so answered.
    answers: Counter[tuple[str, int | str]] = field(default_factory=Counter)
    # Answers other than the one expected (a 401 for a wrong secret, a 503, no answer).
    unexpected: int = 0
    _queue: list[Callback] = field(default_factory=list)

    def enabled(self) -> list[str]:
        """The providers simulated: asked for, and with the secret their callbacks need."""
        have = {
            VERIHUBS: True,
            TELNYX: self.telnyx_key is not None,
            META: self.meta_secret is not None,
            TWILIO: self.twilio_token is not None,
        }
        wanted = PROVIDERS if self.providers is None else self.providers
        return [p for p in PROVIDERS if p in wanted and have[p]]

    def plan_message(self, now: float) -> None:
        enabled = self.enabled()
        provider = self.rng.choices(enabled, weights=[PROVIDER_SHARES[p] for p in enabled])[0]
        if provider == TELNYX:
            self.plan_verification(now)
        elif provider == META:
            self.plan_meta(now)
        elif provider == TWILIO:
            self.plan_twilio(now)
        else:
            self.plan_verihubs(now)

    def plan_verihubs(self, now: float) -> None:
        product = self.rng.choices(list(PRODUCT_SHARES), weights=PRODUCT_SHARES.values())[0]
        table = TABLES[product]
        codes = self.rng.choices([c for _, c in table], weights=[w for w, _ in table])[0]
        steps = {} if product == "sms-otp" else STEP_SECONDS
        session, at = str(uuid.uuid4()), now
        for code in codes:
            low, high = steps.get(code, DEFAULT_STEP)
            at += self.rng.uniform(low, high) / self.speed if code else 0
            self._schedule(product, {"session_id": session, "status": str(code)}, at)
        if self.rng.random() < 0.01:
            self._schedule(product, {"session_id": session, "status": "42"}, at)  # unknown code
        if self.rng.random() < 0.01:
            self._schedule(product, {"session_id": session}, at, expect=400)  # no status
        if self.rng.random() < 0.01:  # the same session on another product's URL
            other = self.rng.choice([p for p in PRODUCT_SHARES if p != product])
            self._schedule(other, {"session_id": session, "status": "1"}, at + 1)

    def plan_verification(self, now: float) -> None:
        table = TELNYX_LIFECYCLES
        events = self.rng.choices([e for _, e in table], weights=[w for w, _ in table])[0]
        channel = self.rng.choice(["sms", "whatsapp"])
        verification, at = str(uuid.uuid4()), now
        for event_type in events:
            at += self.rng.uniform(*DEFAULT_STEP) / self.speed
            params = {"event_type": event_type, "id": verification, "type": channel}
            self._schedule(TELNYX, params, at)

    def plan_meta(self, now: float) -> None:
        table = META_LIFECYCLES
        names = self.rng.choices([e for _, e in table], weights=[w for w, _ in table])[0]
        wamid = "wamid." + base64.b64encode(uuid.uuid4().bytes * 2).decode()
        at = now
        for name in names:
            at += self.rng.uniform(*DEFAULT_STEP) / self.speed
            self._schedule(META, {"id": wamid, "status": name}, at)

    def plan_twilio(self, now: float) -> None:
        channel = self.rng.choice(list(TWILIO_LIFECYCLES))
        table = TWILIO_LIFECYCLES[channel]
        names = self.rng.choices([e for _, e in table], weights=[w for w, _ in table])[0]
        sid, at = f"SM{uuid.uuid4().hex}", now
        for name in names:
            at += self.rng.uniform(*DEFAULT_STEP) / self.speed
            self._schedule(TWILIO, {"sid": sid, "status": name, "channel": channel}, at)

    def _schedule(self, product: str, params: dict[str, str], at: float, expect: int = 200) -> None:
        if self.rng.random() < self.reorder_share:
            at -= self.rng.uniform(0.5, 3.0) / self.speed  # overtakes an earlier callback
        copies = 2 if self.rng.random() < self.duplicate_share else 1
        for i in range(copies):
            due = at + i * 0.3 / self.speed
            heapq.heappush(self._queue, Callback(due, product, params, expect))

    def pending(self) -> int:
        return len(self._queue)

    async def run(self, seconds: float, concurrency: int = 16) -> Counter[int]:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            start, planned = time.monotonic(), 0
            senders: set[asyncio.Task[None]] = set()
            while True:
                now = time.monotonic()
                while planned < self.rate * min(now - start, seconds):
                    self.plan_message(now)
                    planned += 1
                if now - start >= seconds and not self._queue:
                    break
                while self._queue and self._queue[0].due <= now and len(senders) < concurrency:
                    task = asyncio.create_task(self._send(client, heapq.heappop(self._queue)))
                    senders.add(task)
                    task.add_done_callback(senders.discard)
                await asyncio.sleep(0.005)
            await asyncio.gather(*senders)
        return self.sent

    async def _send(self, client: httpx.AsyncClient, callback: Callback) -> None:
        try:
            response = await self._request(client, callback)
        except httpx.HTTPError:
            self.answers[callback.provider, "error"] += 1
            self.unexpected += 1
            return
        self.sent[response.status_code] += 1
        self.answers[callback.provider, response.status_code] += 1
        self.unexpected += response.status_code != callback.expect

    async def _request(self, client: httpx.AsyncClient, callback: Callback) -> httpx.Response:
        if callback.product == TELNYX:
            body, headers = self._telnyx(callback.params)
            return await client.post("/callbacks/telnyx", content=body, headers=headers)
        if callback.product == META:
            body, headers = self._meta(callback.params)
            return await client.post("/callbacks/meta", content=body, headers=headers)
        if callback.product == TWILIO:
            form, headers = self._twilio(callback.params)
            return await client.post("/callbacks/twilio", data=form, headers=headers)
        token = self.product_tokens.get(callback.product, self.token)
        path = f"/callbacks/verihubs/{callback.product}/{token}"
        return await client.get(path, params=callback.params)

    def _meta(self, params: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        """A status notification shaped as Meta's "Examples" of the status webhook, signed as
        Meta signs: `sha256=` + hex HMAC-SHA256 of the raw body with the app secret."""
        assert self.meta_secret is not None
        status: dict[str, object] = {
            "id": params["id"],
            "status": params["status"],
            "timestamp": str(int(time.time())),
            "recipient_id": "16505551234",
        }
        if params["status"] in ("sent", "delivered", "read"):
            status["pricing"] = {
                "billable": True,
                "pricing_model": "PMP",
                "type": "regular",
                "category": "authentication",
            }
        value = {"messaging_product": "whatsapp", "statuses": [status]}
        change = {"field": "messages", "value": value}
        notification = {
            "object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [change]}],
        }
        body = json.dumps(notification).encode()
        digest = hmac.new(self.meta_secret.encode(), body, hashlib.sha256).hexdigest()
        return body, {"content-type": "application/json", "x-hub-signature-256": f"sha256={digest}"}

    def _twilio(self, params: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """A status callback's form, signed as Twilio signs (its own RequestValidator): over
        the URL it called (PUBLIC_URL's, where the receiver has one) and every field."""
        assert self.twilio_token is not None
        sender = "whatsapp:+14155238886" if params["channel"] == "whatsapp" else "+14155238886"
        form = {
            "AccountSid": "AC" + "f" * 32,
            "ApiVersion": "2010-04-01",
            "From": sender,
            "To": sender.replace("14155238886", "15017122661"),
            "MessageSid": params["sid"],
            "MessageStatus": params["status"],
        }
        if params["status"] in ("failed", "undelivered"):
            form["ErrorCode"] = "30003"
        base = (self.public_url or self.url).rstrip("/")
        signature = RequestValidator(self.twilio_token).compute_signature(
            base + "/callbacks/twilio", form
        )
        return form, {"x-twilio-signature": signature}

    def _telnyx(self, params: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        """A webhook shaped like Telnyx's, signed as Telnyx signs: Ed25519 over `ts|body`."""
        assert self.telnyx_key is not None
        now = datetime.now(UTC)
        payload = {"id": params["id"], "type": params["type"], "status": "accepted"}
        event = {
            "event_type": params["event_type"],
            "id": str(uuid.uuid4()),
            "occurred_at": now.isoformat(),
            "payload": payload,
            "record_type": "event",
        }
        body = json.dumps({"data": event, "meta": {"attempt": 1}}).encode()
        stamp = str(int(now.timestamp()))
        signature = self.telnyx_key.sign(stamp.encode() + b"|" + body).signature
        return body, {
            "content-type": "application/json",
            "telnyx-timestamp": stamp,
            "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
        }


def public_key(key: SigningKey) -> str:
    """TELNYX_PUBLIC_KEY for a receiver that must accept this simulator's Telnyx webhooks."""
    return base64.b64encode(bytes(key.verify_key)).decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--token", required=True)
    parser.add_argument("--rate", type=float, default=20.0, help="new messages per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--speed", type=float, default=1.0, help="lifecycle time compression")
    args = parser.parse_args()
    sim = Simulator(args.url, args.token, rate=args.rate, speed=args.speed)
    print(dict(asyncio.run(sim.run(args.seconds))))


if __name__ == "__main__":
    main()
