"""The RQ queue that web and worker share: named by settings, its jobs plain JSON.

RQ pickles jobs by default, so anyone who can write to Redis could run code in a worker.
Jobs are written as JSON (rq's JSONSerializer). Jobs pickled before the upgrade (queued, or
waiting in the failed registry) still decode, with an unpickler that resolves no global at
all: it can rebuild only plain data (tuples, lists, strings, numbers), never call anything.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from core.settings import Settings

PICKLE_PROTOCOL_MARK = b"\x80"  # how every pickle of protocol 2 and later begins


class PlainDataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused: a pickled job names {module}.{name}")


class JobSerializer:
    """JSON out; JSON, or a pickle of plain data from before the upgrade, in."""

    @staticmethod
    def dumps(obj: Any) -> bytes:
        return JSONSerializer.dumps(obj)

    @staticmethod
    def loads(data: bytes | str) -> Any:
        if isinstance(data, bytes) and data.startswith(PICKLE_PROTOCOL_MARK):
            return PlainDataUnpickler(io.BytesIO(data)).load()
        return JSONSerializer.loads(data)


def queue(redis: Redis, settings: Settings) -> Queue:
    return Queue(settings.queue_name, connection=redis, serializer=JobSerializer)
