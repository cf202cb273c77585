"""`make preview`: a private Redis, the stack, a real Prometheus and the simulator, then the
dashboard preview PNG rendered from what Prometheus recorded."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from nacl.signing import SigningKey

from core.embedded import RedisServer
from dashboards import preview
from tools.simulate import Simulator, public_key
from tools.stack import PrometheusServer, Stack

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "demo-token-0123456789abcdefghijklm"  # noqa: S105 - a throwaway token for a private demo stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Long enough for rates over a minute to settle and be read across the whole width.
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--rate", type=float, default=15)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard-preview.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(Path(tmp) / "redis", durable=False).start()
        telnyx = SigningKey.generate()  # plays the Telnyx account
        stack = Stack(redis.url, Path(tmp), CALLBACK_TOKEN=TOKEN, LOG_LEVEL="warning",
                      TELNYX_PUBLIC_KEY=public_key(telnyx))  # fmt: skip
        prometheus = PrometheusServer(stack.port, ROOT / "dashboards/prometheus/rules.yml",
                                      Path(tmp) / "prometheus")  # fmt: skip
        try:
            stack.start_web()
            stack.start_worker()
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
