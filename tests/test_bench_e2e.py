"""The end-to-end benchmark's instruments: the open-loop load generator charges a stalled server
for every request it held up, and bench.e2e's bookkeeping (accepted == applied, every message
as answered) holds against the real processes and catches what goes missing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from bench import e2e, loadgen
from core.events import Event
from core.keys import DEFAULT

SLOW_ANSWER = 0.1


@pytest.fixture
def slow_server() -> Iterator[str]:
    """An HTTP server that takes SLOW_ANSWER s over each request, one at a time."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            await asyncio.sleep(SLOW_ANSWER)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
            await writer.drain()
        writer.close()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    start = asyncio.start_server(handle, "127.0.0.1", 0)
    server = asyncio.run_coroutine_threadsafe(start, loop).result(5)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    loop.call_soon_threadsafe(server.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_latency_is_measured_from_the_due_time_not_the_send(slow_server):
    # 40 requests due over 1 s on one connection to a server needing 0.1 s each: they queue,
    # the last one is answered ~3 s after it was due. A closed loop would report ~0.1 s.
    plan = loadgen.Plan(rate=40, seconds=1, token="t", run=1)
    result = loadgen.run(plan, [slow_server], connections=1)
    assert result.statuses == {"200": 40}
    assert result.latency_ms["p50"] > 1000
    assert result.latency_ms["max"] > 2500
    assert result.max_wait_ms > 2000  # why: waiting for the one connection
    assert result.send_rate == pytest.approx(40)  # every request went out, however late


def test_message_check_finds_missing_and_wrong_statuses(redis, settings, store):
    run, telnyx = 0xBEEF, 0.25
    masks = bytearray([0b111, 0b011, 0b001, 0b111, 0b101, 0])
    events = []
    for i, mask in enumerate(masks):
        provider, product, mid, codes = loadgen.expected(run, i, telnyx)
        events += [
            Event(provider, product, mid, code, 1_000 + j, 1_000 + j)
            for j, code in enumerate(codes)
            if mask & (1 << j)
        ]
    assert {e.provider for e in events} == {"verihubs", "telnyx"}
    store.apply("check", events)
    clean = e2e.check_messages(redis, settings, run, bytes(masks), telnyx)
    assert clean == {"messages_checked": 5, "messages_missing": 0,
                     "messages_wrong_statuses": 0, "messages_wrong_state": 0}  # fmt: skip
    # A callback answered 200 that was never applied, and a message lost entirely.
    masks[2] |= 0b010
    provider, _, mid, _ = loadgen.expected(run, 4, telnyx)
    redis.delete(DEFAULT.message(provider, mid))
    found = e2e.check_messages(redis, settings, run, bytes(masks), telnyx)
    assert found["messages_missing"] == 1
    assert found["messages_wrong_statuses"] == 1
    assert found["messages_wrong_state"] >= 1


def test_a_short_point_against_the_real_processes_loses_nothing():
    point = e2e.Point(webs=2, workers=1, rate=100, seconds=3, telnyx=0.2)
    f = e2e.run_point(point, connections=8, drain_timeout=15, log_level="warning")
    load = f["loadgen"]
    assert load["scheduled"] == 300
    assert f["accepted"] == 300, load["statuses"]
    assert f["drained"] is True
    assert f["applied"] == f["accepted"]
    assert f["lost"] == 0 and f["duplicates"] == 0
    assert f["messages_checked"] == 100
    assert f["messages_missing"] == f["messages_wrong_statuses"] == f["messages_wrong_state"] == 0
    # Each callback's lag was observed once; the CPU of every process was read.
    assert sum(f["lag_buckets"].values()) == 300
    assert set(f["cpu_percent"]) >= {"web0", "web1", "worker0", "redis", "loadgen", "machine"}
    assert f["cpu_percent"]["web0"] > 0 and f["cpu_percent"]["web1"] > 0
