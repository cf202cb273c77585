"""`make preview`: a private Redis, the stack, a real Prometheus and the simulator, then the
dashboard preview PNG rendered from what Prometheus recorded."""

from __future__ import annotations

import argparse
import asyncio
import base64
import secrets
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from nacl.signing import SigningKey

from core.embedded import RedisServer, free_port
from dashboards import preview
from tools.simulate import Simulator, public_key
from tools.stack import PrometheusServer, Stack

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "demo-token-0123456789abcdefghijklm"  # noqa: S105 - a throwaway token for a private demo stack


@contextmanager
def endpoint(status: int) -> Iterator[str]:
    """The application's side of the forwarder: answers every event with `status`."""

    class Answer(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/events"
    finally:
        server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Long enough for rates over a minute to settle and be read across the whole width.
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--rate", type=float, default=15)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard-preview.png")
    args = parser.parse_args()
    # Events out to two endpoints, one of which always fails (its events end dead), and
    # messages without delivery evidence after 30 s timed out: the forwarder row has data.
    with tempfile.TemporaryDirectory() as tmp, endpoint(204) as ok, endpoint(503) as failing:
        redis = RedisServer(Path(tmp) / "redis", durable=False).start()
        telnyx = SigningKey.generate()  # plays the Telnyx account
        stack = Stack(redis.url, Path(tmp), CALLBACK_TOKEN=TOKEN, LOG_LEVEL="warning",
                      TELNYX_PUBLIC_KEY=public_key(telnyx), DELIVERY_TIMEOUT="30")  # fmt: skip
        forward = {
            "FORWARD_URL": f"{ok},{failing}",
            "FORWARD_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
            "FORWARD_ALLOW_INSECURE": "true",  # loopback endpoints, this demo only
            "FORWARD_RETRY_WINDOW": "60",
        }
        prometheus = PrometheusServer(stack.port, ROOT / "dashboards/prometheus/rules.yml",
                                      Path(tmp) / "prometheus")  # fmt: skip
        try:
            stack.start_web()
            stack.start_worker()
            stack.start_forward(**forward)
            prometheus.start()
            sent = asyncio.run(
                Simulator(stack.url, TOKEN, rate=args.rate, speed=2, telnyx_key=telnyx).run(
                    args.seconds
                )
            )
            print("callbacks answered:", dict(sent))
            rendered = preview.render(prometheus.url, args.out, minutes=args.seconds / 60 + 0.5)
            print(rendered.path)
        finally:
            prometheus.stop()
            stack.stop()
            redis.stop()


if __name__ == "__main__":
    main()
