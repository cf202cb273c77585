"""A simulator of Verihubs WhatsApp and SMS OTP callbacks, and signed Telnyx Verify webhooks:
realistic lifecycles, mixed outcomes, duplicates, reordering, unknown codes, a few callbacks
on another product's URL (a misconfigured callback_url) and a few malformed requests.

    python -m tools.simulate --url http://127.0.0.1:8000 --token "$(cat var/callback_token)"
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import heapq
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx2 as httpx
from nacl.signing import SigningKey

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
TELNYX = "telnyx"
# Seconds from the previous callback, by WhatsApp code; SMS steps take DEFAULT_STEP.
DEFAULT_STEP = (0.5, 4.0)
STEP_SECONDS = {1: (0.2, 1.0), 2: (0.5, 4.0), 3: (1.0, 10.0), 4: (3.0, 20.0), 5: (20.0, 40.0)}


@dataclass(order=True)
class Callback:
    due: float
    product: str = field(compare=False)
    params: dict[str, str] = field(compare=False)


@dataclass
class Simulator:
    url: str
    token: str
    rate: float = 20.0
    speed: float = 1.0
    duplicate_share: float = 0.05
    reorder_share: float = 0.1
    # With the Telnyx account's signing key, a share of messages are Telnyx verifications.
    telnyx_key: SigningKey | None = None
    telnyx_share: float = 0.2
    rng: random.Random = field(default_factory=random.Random)
    sent: Counter[int] = field(default_factory=Counter)
    _queue: list[Callback] = field(default_factory=list)

    def plan_message(self, now: float) -> None:
        if self.telnyx_key is not None and self.rng.random() < self.telnyx_share:
            self.plan_verification(now)
            return
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
            self._schedule(product, {"session_id": session}, at)  # malformed: no status
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

    def _schedule(self, product: str, params: dict[str, str], at: float) -> None:
        if self.rng.random() < self.reorder_share:
            at -= self.rng.uniform(0.5, 3.0) / self.speed  # overtakes an earlier callback
        copies = 2 if self.rng.random() < self.duplicate_share else 1
        for i in range(copies):
            heapq.heappush(self._queue, Callback(at + i * 0.3 / self.speed, product, params))

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
        if callback.product == TELNYX:
            body, headers = self._telnyx(callback.params)
            response = await client.post("/callbacks/telnyx", content=body, headers=headers)
        else:
            path = f"/callbacks/verihubs/{callback.product}/{self.token}"
            response = await client.get(path, params=callback.params)
        self.sent[response.status_code] += 1

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
