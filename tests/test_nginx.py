"""The shipped nginx front (deploy/nginx/otp-tracker.conf) in front of the receiver: a real
nginx from Debian's packages, run as a non-daemon with its own prefix on a free port, TLS with
a certificate made for the test. Only addresses and certificate paths are swapped in; every
limit is the shipped one. The slow-connection and big-header attacks of test_front_door.py
are repeated through it, and a real callback is timed through it meanwhile
(`.venv/bin/python -m pytest tests/test_nginx.py -s` prints the figures).

`make tools` installs nginx and openssl (as root); without them these tests are skipped."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from core.embedded import free_port
from tests.samples import TWILIO_AUTH_TOKEN
from tests.support import ADMIN_TOKEN, CALLBACK_TOKEN, ROOT
from tests.test_front_door import (
    GRACE,
    OTP,
    Front,
    Probe,
    assert_held,
    big_header,
    callback,
    flood,
    get,
    open_slow,
    report,
    start_web,
    trickling,
)
from tools.stack import wait_until

pytestmark = pytest.mark.skipif(
    not (shutil.which("nginx") and shutil.which("openssl")),
    reason="nginx or openssl missing: `make tools` installs them (as root)",
)
SHIPPED = ROOT / "deploy" / "nginx" / "otp-tracker.conf"
HEADER_TIMEOUT = 10.0  # client_header_timeout of the shipped configuration
FORGED = "X-Forwarded-For: 203.0.113.9\r\n"


@pytest.fixture(scope="module")
def app(redis_server, tmp_path_factory) -> Iterator[Front]:
    """The receiver as deployed behind the proxy: it believes X-Forwarded-For from it alone,
    and takes Verihubs callbacks from loopback only."""
    port = free_port()
    log = tmp_path_factory.mktemp("behind-nginx") / "web.log"
    env = {
        "PORT": str(port),
        "REDIS_URL": redis_server.url,
        "CALLBACK_TOKEN": CALLBACK_TOKEN,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
        "TRUSTED_PROXIES": "127.0.0.1",
        "VERIHUBS_ALLOWED_NETWORKS": "127.0.0.0/8",
        "LOG_LEVEL": "warning",
        "MAX_BACKLOG": "1000000",
    }
    process = start_web(env, log)
    front = Front(port, log)
    try:
        wait_until(lambda: _answers(front), what="receiver start")
        yield front
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(front: Front) -> bool:
    try:
        return callback(front) > 0
    except (OSError, AssertionError):
        return False


def site(text: str, app_port: int, port: int, cert: Path, key: Path) -> str:
    """The shipped file with the test's addresses and certificate; nothing else changed."""
    swaps = {
        "server 127.0.0.1:8000;": f"server 127.0.0.1:{app_port};",
        "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
        "listen [::]:443 ssl;": "",
        "/etc/ssl/certs/otp.example.com.pem": str(cert),
        "/etc/ssl/private/otp.example.com.key": str(key),
    }
    for shipped, ours in swaps.items():
        assert text.count(shipped) == 1, shipped
        text = text.replace(shipped, ours)
    return text


@pytest.fixture(scope="module")
def nginx(app, tmp_path_factory) -> Iterator[Front]:
    prefix = tmp_path_factory.mktemp("nginx")
    cert, key = prefix / "cert.pem", prefix / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=localhost", "-addext",
         "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    (prefix / "otp-tracker.conf").write_text(site(SHIPPED.read_text(), app.port, port, cert, key))
    temp = {name: prefix / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir()
    main = f"""
        daemon off;
        {"user root;" if os.geteuid() == 0 else ""}
        worker_processes 1;
        pid {prefix}/nginx.pid;
        error_log {prefix}/error.log warn;
        events {{ worker_connections 1024; }}
        http {{
            client_body_temp_path {temp["body"]};
            proxy_temp_path {temp["proxy"]};
            fastcgi_temp_path {temp["fastcgi"]};
            uwsgi_temp_path {temp["uwsgi"]};
            scgi_temp_path {temp["scgi"]};
            include {prefix}/otp-tracker.conf;
        }}
    """
    (prefix / "nginx.conf").write_text(main)
    args = ["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")]  # fmt: skip
    subprocess.run([*args, "-t", "-q"], check=True)
    process = subprocess.Popen(args)
    tls = ssl.create_default_context(cafile=str(cert))
    front = Front(port, prefix / "error.log", tls)
    try:
        wait_until(lambda: _answers(front), what="nginx start")
        yield front
    finally:
        process.terminate()
        process.wait(timeout=10)


ATTACKER = "127.0.0.2"  # not the provider's address: nginx limits connections per address


def test_slow_connections_through_nginx(nginx):
    attacker = replace(nginx, source=ATTACKER)
    raw = replace(attacker, tls=None)  # the same port, without even a TLS handshake
    half_header = b"POST /callbacks/twilio HTTP/1.1\r\nHost: t\r\nX-Slow: "
    slow_body = (
        b"POST /callbacks/twilio HTTP/1.1\r\nHost: t\r\nX-Twilio-Signature: AAAA\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000\r\n\r\nA="
    )
    with Probe(nginx) as probe:
        silent = open_slow(raw, 100, b"")
        half = open_slow(attacker, 100, half_header)
        body = open_slow(attacker, 100, slow_body)
        with trickling(half + body):
            time.sleep(HEADER_TIMEOUT + GRACE)
    # The app never sees them: nginx reads the whole head, and the whole body, first.
    assert report("through nginx: 100 silent sockets", probe, silent) == 0
    assert report("through nginx: 100 half-sent headers", probe, half) == 0
    # nginx's client_body_timeout is between two reads, not for the whole body: a trickled body
    # stays with nginx (never the app), at most limit_conn (64) of them per client address.
    assert report("through nginx: 100 trickled bodies", probe, body) <= 64
    assert_held(probe)


def test_huge_headers_through_nginx(nginx):
    probe, sockets, answers = flood(nginx, [big_header] * 4, timeout=5.0, source=ATTACKER)
    still = report("through nginx: 4 senders of 64 MiB headers", probe, sockets, f"; {answers}")
    assert still == 0
    assert_held(probe)
    assert not answers["200"]


def test_nginx_sets_the_client_address_and_keeps_metrics_inside(app, nginx):
    # A forged X-Forwarded-For goes no further than nginx: the app sees loopback, allowed...
    callback(nginx, headers=FORGED)
    # ...where the same header, straight from the trusted proxy's address, would be believed.
    assert get(app, f"{OTP}?session_id=direct-1&status=1", headers=FORGED).startswith(
        b"HTTP/1.1 403"
    )
    for path in ("/metrics", "/metrics/shared"):
        assert get(nginx, path).startswith(b"HTTP/1.1 404")
