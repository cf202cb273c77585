"""Runs the real processes on loopback (uvicorn receiver, RQ worker, Prometheus), for the
tests, the benchmark and the dashboard preview."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx2 as httpx
import yaml
from redis import Redis

from core.embedded import free_port

WORKERS_KEY = "rq:workers"

ROOT = Path(__file__).resolve().parent.parent
# The shipped example: the tests and the preview scrape as a deployment would.
PROMETHEUS_CONFIG = ROOT / "dashboards" / "prometheus" / "prometheus.yml"
SHARED_JOB = "otp-tracker-shared"


class Stack:
    def __init__(self, redis_url: str, log_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = log_dir
        self.env = {**os.environ, "REDIS_URL": redis_url, **env}
        self.web: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        # More web processes beside the first (`start_another_web`), and every web port.
        self.more_webs: list[subprocess.Popen[bytes]] = []
        self.ports = [self.port]

    def _spawn(self, name: str, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("ab")
        return subprocess.Popen(
            args, cwd=ROOT, env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT
        )

    def log(self, name: str) -> str:
        """What a process logged so far (`web`, `worker0`, `worker1`, ...)."""
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start_web(self) -> None:
        # The Procfile's web process: uvicorn with the front door's limits.
        args = [sys.executable, "-m", "receiver.server", "--port", str(self.port)]
        self.web = self._spawn("web", args)
        wait_until(lambda: _answers(self.url + "/healthz"), what="receiver start")

    def start_another_web(self) -> str:
        """One more web process on its own port, against the same Redis; its URL."""
        port = free_port()
        args = [sys.executable, "-m", "receiver.server", "--port", str(port)]
        self.more_webs.append(self._spawn(f"web{len(self.ports)}", args))
        self.ports.append(port)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(url + "/healthz"), what="receiver start")
        return url

    def start_forward(self, **env: str) -> subprocess.Popen[bytes]:
        """`python -m workers.forward` (the Procfile's `forward`) with extra environment."""
        args = [sys.executable, "-m", "workers.forward"]
        forward = self._spawn(f"forward{len(self.more_webs)}", args, **env)
        self.more_webs.append(forward)  # stopped with the web processes
        return forward

    def start_worker(self, *python_args: str, **env: str) -> subprocess.Popen[bytes]:
        """`python -m workers.main` (or python with these arguments, e.g. a worker with a fault
        injected), with extra environment; returns once it has registered with RQ."""
        redis = Redis.from_url(self.env["REDIS_URL"])
        args = [sys.executable, *(python_args or ("-m", "workers.main"))]
        worker = self._spawn(f"worker{len(self.workers)}", args, **env)
        self.workers.append(worker)
        # By its pid: its first maintenance may unregister a dead worker as it registers.
        wait_until(lambda: _registered(redis, worker.pid), what="worker registration")
        return worker

    def stop(self) -> None:
        for process in [self.web, *self.more_webs, *self.workers]:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [self.web, *self.more_webs, *self.workers]:
            if process is not None:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()


def _registered(redis: Redis, pid: int) -> bool:
    return any(redis.hget(key, "pid") == str(pid).encode() for key in redis.smembers(WORKERS_KEY))


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(check: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class PrometheusServer:
    """A real Prometheus on loopback with the shipped prometheus.yml and our rules, scraping
    every second: /metrics of every web port, /metrics/shared of the first one only."""

    def __init__(self, target_ports: int | Sequence[int], rules: Path, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        config = data_dir / "prometheus.yml"
        data_dir.mkdir(parents=True, exist_ok=True)
        ports = [target_ports] if isinstance(target_ports, int) else list(target_ports)
        settings = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
        settings["global"].update(scrape_interval="1s", evaluation_interval="1s")
        settings["rule_files"] = [str(rules)]
        for job in settings["scrape_configs"]:
            shared = job["job_name"] == SHARED_JOB
            targets = [f"127.0.0.1:{p}" for p in (ports[:1] if shared else ports)]
            job["static_configs"] = [{"targets": targets}]
        config.write_text(json.dumps(settings))  # JSON is YAML
        self.args = [
            "prometheus",
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--storage.tsdb.path={data_dir / 'tsdb'}",
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PrometheusServer:
        log = (self.data_dir / "prometheus.log").open("ab")
        self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: _answers(self.url + "/-/ready"), what="prometheus ready")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
