"""The floor under the memory target: what a message's state would cost as a field of shared
hashes (as billing records are kept, `core.keys.Keys.billing_records`) instead of a key of its
own, in Redis's compact listpack encoding (which needs `hash-max-listpack-value` raised above
the packed state). A layout that is not built: this measures it, nothing reads it.

The state is the one `make bench`'s memory row leaves for a message of 5 callbacks: once as
it is stored today (its fields and values joined), once packed as tightly as text allows
(times as offsets from the first, the product as a code). `python -m bench.layouts`.
"""

from __future__ import annotations

import tempfile
import time
import zlib
from pathlib import Path

from redis import Redis

from core import logs
from core.embedded import RedisServer

MESSAGES, HASHES = 100_000, 1024
AS_STORED = (
    "p=whatsapp-otp;0=1796143724244;n=5;h0=n0,mx4xljh0,0;m=2819;f=1796143724244;q=5;"
    "1=1796143725144;h1=n1,mx4xljh0,-900;8=1796143726044;h2=n2,mx4xljh0,-1800;o=7;"
    "9=1796143726944;h3=n3,mx4xljh0,-2700;11=1796143727844;h4=n4,mx4xljh0,-3600"
)
PACKED = (
    "p1;m2819;f1796143724244;o7;q5;n5;0:0;1:900;8:1800;9:2700;11:3600;"
    "h:n0,0,0;n1,900,-900;n2,1800,-1800;n3,2700,-2700;n4,3600,-3600"
)


def bytes_per_message(redis: Redis, value: str) -> float:
    redis.flushall()
    time.sleep(0.2)  # FLUSHALL frees lazily
    before = redis.info("memory")["used_memory"]
    pipe = redis.pipeline(transaction=False)
    for i in range(MESSAGES):
        message_id = f"{i:08x}-7c2e-4b5e-9f1a-{i:012x}"
        pipe.hset(f"otp:ms:verihubs:0:{zlib.crc32(message_id.encode()) % HASHES}",
                  message_id, value)  # fmt: skip
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    return (redis.info("memory")["used_memory"] - before) / MESSAGES


def main() -> None:
    logs.configure("error")
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp), durable=False).start()
        try:
            redis = Redis.from_url(server.url)
            redis.config_set("hash-max-listpack-value", 1024)
            for name, value in (("as stored today", AS_STORED), ("packed", PACKED)):
                print(f"state {name} ({len(value)}-byte value) as a field of {HASHES} shared"
                      f" hashes: {bytes_per_message(redis, value):.0f} B a message")  # fmt: skip
        finally:
            server.stop()


if __name__ == "__main__":
    main()
