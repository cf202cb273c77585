"""The front door under attack (issue 12): the receiver as the Procfile runs it, attacked over
real sockets from this machine while a real callback (a Verihubs GET, stored in Redis) is
timed, each on a connection of its own.

Each attack prints a real callback's median and p95 latency during it, and how many attacker
sockets the server left open past its deadline:
`.venv/bin/python -m pytest tests/test_front_door.py -s`. The server runs with its deadlines
(HEADER_TIMEOUT, BODY_TIMEOUT) at 2 s, every other limit at its default, and 256 file
descriptors."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from core.embedded import free_port
from tests.samples import (
    FORM,
    META_APP_SECRET,
    TWILIO_AUTH_TOKEN,
    meta_headers,
    meta_notification,
    meta_status,
    verihubs_url,
)
from tests.support import ADMIN_TOKEN, CALLBACK_TOKEN, ROOT, make_settings
from tools.stack import wait_until

DEADLINE = 2.0  # HEADER_TIMEOUT and BODY_TIMEOUT of the server under test
GRACE = 1.5  # past the deadline, before counting the attacker's sockets still open
FD_LIMIT = 256
ATTACK = 3.0  # how long the attacks that do not wait for a deadline last
OTP = verihubs_url("whatsapp-otp")
# What the receiver must hold to while attacked: no callback lost, and these latencies.
MAX_MEDIAN, MAX_P95 = 0.05, 0.3


def web_command(root: Path = ROOT) -> str:
    """The Procfile's web command: what `make run` and a deployment run."""
    for line in (root / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no web process in the Procfile")


@dataclass
class Front:
    port: int
    log: Path
    tls: ssl.SSLContext | None = None  # through nginx (tests/test_nginx.py)
    source: str = "127.0.0.1"  # the client's address: attackers can use another of 127/8

    def connect(self, timeout: float = 3.0) -> socket.socket:
        where = ("127.0.0.1", self.port)
        sock = socket.create_connection(where, timeout=timeout, source_address=(self.source, 0))
        return self.tls.wrap_socket(sock, server_hostname="localhost") if self.tls else sock


def start_web(env: dict[str, str], log: Path, fd_limit: int | None = None) -> subprocess.Popen:
    """The Procfile's web command through a shell (as honcho runs it), this venv first on PATH."""

    def limit() -> None:
        if fd_limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.Popen(
        ["/bin/sh", "-c", "exec " + web_command()],
        cwd=ROOT,
        env={**os.environ, "PATH": path, **env},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        preexec_fn=limit,
    )


@pytest.fixture(scope="module")
def front(redis_server, tmp_path_factory) -> Iterator[Front]:
    port = free_port()
    log = tmp_path_factory.mktemp("front") / "web.log"
    env = {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "REDIS_URL": redis_server.url,
        "CALLBACK_TOKEN": CALLBACK_TOKEN,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
        "HEADER_TIMEOUT": str(DEADLINE),
        "BODY_TIMEOUT": str(DEADLINE),
        "LOG_LEVEL": "warning",
        "MAX_BACKLOG": "1000000",
    }
    process = start_web(env, log, FD_LIMIT)
    front = Front(port, log)
    try:
        wait_until(lambda: _answers(front), what="receiver start")
        for _ in range(20):  # warm: Redis connections, first jobs
            callback(front)
        yield front
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _answers(front: Front) -> bool:
    try:
        return callback(front) > 0
    except (OSError, AssertionError):
        return False


# The real callback and its latency --------------------------------------------------------


def callback(front: Front, timeout: float = 3.0, headers: str = "") -> float:
    """One real callback on a new connection; its latency in seconds."""
    started = time.perf_counter()
    answer = get(front, f"{OTP}?session_id=fd-{uuid.uuid4()}&status=1", timeout, headers)
    if not answer.startswith(b"HTTP/1.1 200"):
        raise AssertionError(answer[:200])
    return time.perf_counter() - started


def get(front: Front, target: str, timeout: float = 3.0, headers: str = "") -> bytes:
    """The whole answer to a GET on a new connection."""
    with front.connect(timeout) as sock:
        head = f"GET {target} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n"
        sock.sendall(head.encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


class Probe:
    """Real callbacks one after another, timed, until the block ends."""

    def __init__(self, front: Front) -> None:
        self.front = front
        self.latencies: list[float] = []
        self.failures = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Probe:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.latencies.append(callback(self.front))
            except (OSError, AssertionError):
                self.failures += 1
            self.stop.wait(0.02)

    def figures(self) -> tuple[float, float]:
        ms = sorted(1000 * s for s in self.latencies)
        if len(ms) < 2:
            return float("inf"), float("inf")
        return statistics.median(ms), statistics.quantiles(ms, n=20)[18]


def report(attack: str, probe: Probe, sockets: list[socket.socket], extra: str = "") -> int:
    """Print the figures of an attack; the number of attacker sockets still open."""
    still = sum(is_open(sock) for sock in sockets)
    median, p95 = probe.figures()
    print(
        f"\n[front door] {attack}: callback median {median:.1f} ms, p95 {p95:.1f} ms"
        f" ({len(probe.latencies)} ok, {probe.failures} failed); attacker sockets open after"
        f" the deadline: {still}/{len(sockets)}{extra}"
    )
    return still


def assert_held(probe: Probe) -> None:
    median, p95 = probe.figures()
    assert probe.failures == 0, f"{probe.failures} real callbacks failed"
    assert median < MAX_MEDIAN * 1000 and p95 < MAX_P95 * 1000, (median, p95)


def is_open(sock: socket.socket) -> bool:
    """Whether the server still holds the connection (what it sent before closing is read)."""
    sock.setblocking(False)
    try:
        while sock.recv(65536):
            pass
        return False
    except (BlockingIOError, ssl.SSLWantReadError):
        return True
    except OSError:
        return False
    finally:
        sock.close()


# Slow clients -----------------------------------------------------------------------------


def trickle(sockets: list[socket.socket], stop: threading.Event, byte: bytes) -> None:
    """One byte every half second on each socket, until stopped (slowloris)."""
    while not stop.wait(0.5):
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.send(byte)


def open_slow(front: Front, count: int, opening: bytes) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = front.connect()
        if opening:
            sock.sendall(opening)
        sockets.append(sock)
    return sockets


@contextmanager
def trickling(sockets: list[socket.socket]) -> Iterator[None]:
    stop = threading.Event()
    trickler = threading.Thread(target=trickle, args=(sockets, stop, b"a"), daemon=True)
    trickler.start()
    try:
        yield
    finally:
        stop.set()
        trickler.join()


def slow_attack(front: Front, count: int, opening: bytes, trickled: bool) -> list:
    """`count` connections sending `opening`, then nothing or a byte every half second,
    until the server's deadline has passed."""
    sockets = open_slow(front, count, opening)
    with trickling(sockets if trickled else []):
        time.sleep(DEADLINE + GRACE)
    return sockets


def test_silent_sockets_are_closed_and_cannot_take_every_descriptor(front):
    # More silent sockets than the process has file descriptors (256).
    with Probe(front) as probe:
        sockets = slow_attack(front, 260, b"", trickled=False)
    assert report("260 silent sockets, fd limit 256", probe, sockets) == 0
    assert_held(probe)


def test_half_sent_headers_are_closed_at_the_header_deadline(front):
    opening = b"POST /callbacks/twilio HTTP/1.1\r\nHost: t\r\nX-Slow: "
    with Probe(front) as probe:
        sockets = slow_attack(front, 100, opening, trickled=True)
    assert report("100 half-sent headers, a byte each 0.5 s", probe, sockets) == 0
    assert_held(probe)


def test_a_trickled_body_is_closed_at_the_body_deadline(front):
    # Signed (the signature is wrong, which only the whole body can tell): the app reads it.
    opening = (
        b"POST /callbacks/twilio HTTP/1.1\r\nHost: t\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"X-Twilio-Signature: bm90IGEgc2lnbmF0dXJl\r\nContent-Length: 10000\r\n\r\nMessageSid="
    )
    with Probe(front) as probe:
        sockets = slow_attack(front, 100, opening, trickled=True)
    assert report("100 trickled bodies, a byte each 0.5 s", probe, sockets) == 0
    assert_held(probe)


# Big requests -----------------------------------------------------------------------------


Send = Callable[[socket.socket, threading.Event], str]


def flood(
    front: Front, senders: list[Send], timeout: float = 1.0, source: str = "127.0.0.1"
) -> tuple[Probe, list[socket.socket], Counter]:
    """A thread per sender, each sending its request one after another for ATTACK seconds,
    each on a new connection from `source`, real callbacks timed meanwhile; then the deadline
    passes."""
    stop, sockets, answers = threading.Event(), [], Counter()
    attacker = replace(front, source=source)

    def sender(send: Send) -> None:
        while not stop.is_set():
            try:
                sock = attacker.connect(timeout)
            except OSError:
                answers["connect failed"] += 1
                continue
            sockets.append(sock)
            answers[send(sock, stop)] += 1

    threads = [threading.Thread(target=sender, args=(s,), daemon=True) for s in senders]
    with Probe(front) as probe:
        for thread in threads:
            thread.start()
        time.sleep(ATTACK)
    stop.set()
    for thread in threads:
        thread.join()
    time.sleep(DEADLINE + GRACE)
    return probe, sockets, answers


def status(sock: socket.socket) -> str:
    try:
        head = sock.recv(64)
    except OSError as exc:
        return type(exc).__name__
    return head[9:12].decode() if head.startswith(b"HTTP/1.1 ") else "closed"


MIB = b"a" * (1 << 20)


def big_header(sock: socket.socket, stop: threading.Event) -> str:
    """A header of up to 64 MiB, sent as fast as the server takes it."""
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + MIB)
        for _ in range(63):
            if stop.is_set():
                return "unfinished"
            sock.sendall(MIB)
    except TimeoutError:
        return "unfinished"
    except OSError:
        pass
    return status(sock)


def test_a_huge_header_is_refused_without_being_parsed(front):
    probe, sockets, answers = flood(front, [big_header] * 4, timeout=5.0)
    still = report("4 senders of 64 MiB headers", probe, sockets, f"; answers {dict(answers)}")
    assert still == 0
    assert_held(probe)
    assert answers["431"] > 0


# Just under 1 MiB (MAX_BODY_BYTES), of what percent-decodes slowly.
BIG_FORM = b"Body=" + b"%41" * (((1 << 20) - 1024) // 3)


def big_form(signature: bytes) -> Send:
    head = (
        b"POST /callbacks/twilio HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n%sContent-Length: %d\r\n\r\n"
        % (signature, len(BIG_FORM))
    )

    def send(sock: socket.socket, stop: threading.Event) -> str:
        try:
            sock.sendall(head + BIG_FORM)
        except TimeoutError:
            return "unfinished"
        except OSError:
            pass
        return status(sock)

    return send


def test_unsigned_megabyte_twilio_forms_are_not_parsed(front):
    # Two senders without a signature, two with a wrong one (only the parsed form can tell).
    unsigned, wrong = big_form(b""), big_form(b"X-Twilio-Signature: bm90IGEgc2lnbmF0dXJl\r\n")
    probe, sockets, answers = flood(front, [unsigned, wrong] * 2)
    still = report("4 senders of 1 MiB Twilio forms", probe, sockets, f"; answers {dict(answers)}")
    assert still == 0
    assert_held(probe)
    assert not answers["200"]


# The limits as configured ------------------------------------------------------------------


def test_body_limits_are_per_provider_and_never_above_max_body_bytes():
    limits = make_settings("redis://127.0.0.1:1/0").body_limits
    assert limits == {"verihubs": 16384, "telnyx": 16384, "meta": 1 << 20, "twilio": 16384}
    low = make_settings("redis://127.0.0.1:1/0", MAX_BODY_BYTES="8192").body_limits
    assert set(low.values()) == {8192}
    with pytest.raises(ValueError, match="TWILIO_MAX_BODY_BYTES"):
        make_settings("redis://127.0.0.1:1/0", TWILIO_MAX_BODY_BYTES=str(2 << 20))
    with pytest.raises(ValueError, match="MAX_HEADER_BYTES"):
        make_settings("redis://127.0.0.1:1/0", MAX_HEADER_BYTES="100")


def test_a_small_providers_limit_is_16_kib_and_a_big_meta_batch_passes(app_client, redis):
    client = app_client(META_APP_SECRET=META_APP_SECRET)
    form = b"session_id=s&status=1&pad=" + b"x" * 17_000
    assert client.post(OTP, content=form, headers=FORM).status_code == 413
    # ~300 KB of statuses: parsed in a worker thread, every one accepted.
    statuses = [meta_status(f"wamid.big{i}", "sent", int(time.time())) for i in range(1500)]
    raw = json.dumps(meta_notification(statuses)).encode()
    assert len(raw) > 200_000
    answer = client.post("/callbacks/meta", content=raw, headers=meta_headers(raw))
    assert answer.status_code == 200 and answer.json()["events"] == 1500


def test_the_launcher_serves_metrics_only_on_metrics_port(redis_server, tmp_path):
    port, metrics_port = free_port(), free_port()
    env = {"PORT": str(port), "METRICS_PORT": str(metrics_port), "REDIS_URL": redis_server.url,
           "CALLBACK_TOKEN": CALLBACK_TOKEN}  # fmt: skip
    process = start_web(env, tmp_path / "web.log")
    try:
        front, metrics = Front(port, tmp_path), Front(metrics_port, tmp_path)
        wait_until(lambda: _answers(front), what="receiver start")
        assert get(front, "/metrics").startswith(b"HTTP/1.1 404")
        assert get(front, "/metrics/shared").startswith(b"HTTP/1.1 404")
        page = get(metrics, "/metrics/shared")
        assert page.startswith(b"HTTP/1.1 200") and b"otp_redis_up 1.0" in page
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_launcher_refuses_a_bad_limit_in_json(tmp_path):
    log = tmp_path / "web.log"
    process = start_web({"REDIS_URL": "redis://127.0.0.1:1/0", "BODY_TIMEOUT": "0"}, log)
    assert process.wait(timeout=20) == 2
    (line,) = log.read_text().splitlines()
    assert json.loads(line)["error"] == "HEADER_TIMEOUT and BODY_TIMEOUT must be positive"


# What the server logs ---------------------------------------------------------------------


def test_uvicorn_warnings_are_json_lines_like_every_other(front):
    with front.connect() as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert sock.recv(64).startswith(b"HTTP/1.1 400")
    wait_until(lambda: b"Invalid HTTP request" in front.log.read_bytes(), what="the warning")
    records = [json.loads(line) for line in front.log.read_text().splitlines() if line.strip()]
    warnings = [r for r in records if r.get("logger") == "uvicorn.error"]
    assert warnings and warnings[0]["level"] == "warning", records
