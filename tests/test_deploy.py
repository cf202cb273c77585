"""The deployment kit (deploy/): each piece checked with the tool that would run it, as far as
this machine can: systemd-analyze on the units, docker-compose on the compose file, promtool
on compose's Prometheus, the environment template against the settings it documents, and the
runtime-only install importing no test or lint tool."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
import tomllib

import pytest
import yaml
from starlette.config import Config

from core.settings import Settings
from tests.support import ROOT

DEPLOY = ROOT / "deploy"
ENV_EXAMPLE = DEPLOY / ".env.example"
UNITS = DEPLOY / "systemd"
COMPOSE = DEPLOY / "compose.yaml"
# `NAME=value` (to fill in) or `# NAME=value` (the default, while commented out).
ENV_LINE = re.compile(r"^(# )?([A-Z][A-Z0-9_]*)=(.*)$", re.MULTILINE)


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:  # not a skip: `make tools` installs it (Debian's package)
        pytest.fail(f"{name} is missing: `make test` installs it (make tools, as root)")
    return found


# The environment template --------------------------------------------------------------


def settings_variables() -> list[str]:
    """Every variable Settings.from_env reads, found by watching it read them."""
    read: list[str] = []
    original = Config.get

    def get(self: Config, key: str, *args: object, **kwargs: object) -> object:
        read.append(key)
        return original(self, key, *args, **kwargs)

    Config.get = get  # type: ignore[method-assign]
    try:
        Settings.from_env({})
    finally:
        Config.get = original  # type: ignore[method-assign]
    return read


def procfile_variables() -> dict[str, str]:
    """`${NAME:-default}` in the Procfile's commands (HOST, PORT)."""
    return dict(re.findall(r"\$\{([A-Z_]+):-([^}]*)\}", (ROOT / "Procfile").read_text()))


def compose_variables() -> set[str]:
    return set(re.findall(r"\$\{([A-Z_]+)", COMPOSE.read_text()))


def documented() -> list[tuple[bool, str, str]]:
    """(commented out, name, value) per variable line of .env.example."""
    return [(bool(c), name, value) for c, name, value in ENV_LINE.findall(ENV_EXAMPLE.read_text())]


def test_env_example_lists_every_variable_once_and_no_other():
    names = [name for _, name, _ in documented()]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    expected = set(settings_variables()) | set(procfile_variables()) | compose_variables()
    assert set(names) == expected, {
        "missing": sorted(expected - set(names)),
        "not read by anything": sorted(set(names) - expected),
    }


def test_env_example_defaults_are_the_real_defaults():
    # `# NAME=` (empty) says: unset by default.
    defaults = {name: value for commented, name, value in documented() if commented and value}
    service = {k: v for k, v in defaults.items() if k in set(settings_variables())}
    # Setting every documented default explicitly changes nothing.
    assert Settings.from_env(service) == Settings.from_env({})
    for name, default in procfile_variables().items():
        assert defaults[name] == default, name


def test_env_example_as_written_starts_once_the_secrets_are_filled_in():
    filled = {
        name: value or "x" * 32
        for commented, name, value in documented()
        if not commented and name not in compose_variables()
    }
    settings = Settings.from_env(filled)
    assert settings.redis_url and settings.callback_tokens and settings.admin_tokens
    assert {"REDIS_URL", "CALLBACK_TOKEN", "ADMIN_TOKEN"} == set(filled)


# Families the README documents by their pattern rather than one by one.
DOCUMENTED_AS = {r"DELIVERY_TIMEOUT_\w+": "`DELIVERY_TIMEOUT_<PROVIDER>_<PRODUCT>`"}


def test_readme_documents_every_variable():
    readme = (ROOT / "README.md").read_text()
    for name in {*settings_variables(), *procfile_variables()}:
        pattern = next((p for p in DOCUMENTED_AS if re.fullmatch(p, name)), None)
        assert (DOCUMENTED_AS[pattern] if pattern else f"`{name}`") in readme, name


# systemd ---------------------------------------------------------------------------------


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser


def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    analyze = tool("systemd-analyze")
    # verify also checks that ExecStart's program exists: here, the test's interpreter
    # stands in for the installed /opt/otp-tracker one.
    for path in UNITS.glob("*.service"):
        text = path.read_text().replace("/opt/otp-tracker/bin/python", sys.executable)
        (tmp_path / path.name).write_text(text)
    instances = [str(tmp_path / "otp-tracker-web@8000.service")]
    instances += [str(tmp_path / f"otp-tracker-{name}@1.service") for name in ("worker", "forward")]
    result = subprocess.run(
        [analyze, "verify", *instances], capture_output=True, text=True, check=False
    )
    # Unknown keys and unparsable values are only warnings (exit 0): any output fails.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr
    )


def test_systemd_units_restart_and_stop_as_the_processes_need():
    defaults = Settings.from_env({})
    web = unit("otp-tracker-web@.service")["Service"]
    worker = unit("otp-tracker-worker@.service")["Service"]
    for name, service in (("web", web), ("worker", worker)):
        assert service["Restart"] == "always"
        assert service["User"] != "root"
        text = (UNITS / f"otp-tracker-{name}@.service").read_text()
        assert "\nEnvironmentFile=/etc/otp-tracker/otp-tracker.env\n" in text
    # MAX_CONNECTIONS fits in the file descriptors, with the 64 the web process keeps.
    assert int(web["LimitNOFILE"]) >= defaults.max_connections + 64
    assert web["ExecStart"].endswith("-m receiver.server --host 127.0.0.1 --port %i")
    # Warm shutdown: a worker finishes its batch (at most JOB_TIMEOUT) before it is killed.
    assert worker["ExecStart"].endswith("-m workers.main")
    assert int(worker["TimeoutStopSec"]) == defaults.job_timeout + 10


# compose -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose_config(tmp_path_factory) -> dict:
    """`docker-compose config`: the file as compose resolves it (no daemon needed), from a
    copy of the repository's deploy/ and dashboards/ with .env made from the template."""
    compose = tool("docker-compose")
    tmp = tmp_path_factory.mktemp("compose")
    for folder in ("deploy", "dashboards"):
        shutil.copytree(ROOT / folder, tmp / folder)
    (tmp / "deploy" / ".env").write_text(
        ENV_EXAMPLE.read_text().replace("GRAFANA_ADMIN_PASSWORD=", "GRAFANA_ADMIN_PASSWORD=pw")
    )
    result = subprocess.run(
        [compose, "-f", str(tmp / "deploy" / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_redis_keeps_every_write_and_never_evicts(compose_config):
    command = " ".join(compose_config["services"]["redis"]["command"])
    assert "--appendonly yes" in command and "--appendfsync always" in command
    assert "--maxmemory-policy noeviction" in command


def test_compose_runs_one_image_for_web_and_scalable_workers(compose_config):
    services = compose_config["services"]
    web, worker = services["web"], services["worker"]
    assert web["image"] == worker["image"] and web["build"]["dockerfile"] == "deploy/Dockerfile"
    assert worker["command"] == ["python", "-m", "workers.main"]
    assert worker["deploy"]["replicas"] >= 1 and "ports" not in worker
    assert worker["healthcheck"] == {"test": ["NONE"]}  # disabled: the image's is the web's
    assert "healthcheck" not in web
    assert worker["stop_grace_period"] == f"{Settings.from_env({}).job_timeout + 10}s"
    for service in (web, worker):
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    # Published on the host's loopback only: the HTTPS proxy is the way in.
    ports = [port for s in services.values() for port in s.get("ports", [])]
    assert ports and all(str(port).startswith("127.0.0.1:") for port in ports), ports


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {name: command.strip() for name, _, command in (line.partition(":") for line in lines)}


def test_every_procfile_process_has_a_unit_and_a_compose_service(compose_config):
    """What `make run` runs is what a deployment runs: the same processes, the same modules."""
    services = compose_config["services"]
    for name, command in procfile().items():
        module = command.split("python -m ")[1].split()[0]
        text = (UNITS / f"otp-tracker-{name}@.service").read_text()
        assert f"ExecStart=/opt/otp-tracker/bin/python -m {module}" in text, name
        if name == "web":  # the image's default command
            assert "exec python -m receiver.server" in (DEPLOY / "Dockerfile").read_text()
        else:
            assert services[name]["command"] == ["python", "-m", module], name
            assert services[name]["image"] == services["web"]["image"]
            assert unit(f"otp-tracker-{name}@.service")["Service"]["Restart"] == "always"


def test_compose_prometheus_and_grafana_get_our_files(compose_config):
    services = compose_config["services"]
    mounts = {
        name: dict(_mount(v) for v in services[name]["volumes"])
        for name in ("prometheus", "grafana")
    }
    prometheus, grafana = mounts["prometheus"], mounts["grafana"]
    assert prometheus["/etc/prometheus/rules.yml"].endswith("dashboards/prometheus/rules.yml")
    assert prometheus["/etc/prometheus/prometheus.yml"].endswith("deploy/prometheus/prometheus.yml")
    provider = yaml.safe_load(
        (ROOT / "dashboards/provisioning/dashboards/otp-tracker.yaml").read_text()
    )
    dashboards_path = provider["providers"][0]["options"]["path"]
    assert grafana[dashboards_path].endswith("dashboards/grafana")
    assert any(t.startswith("/etc/grafana/provisioning/datasources/") for t in grafana)
    assert any(t.startswith("/etc/grafana/provisioning/dashboards/") for t in grafana)


def _mount(volume: str | dict) -> tuple[str, str]:
    """(target, source) of a volume, in the short or the long syntax."""
    if isinstance(volume, dict):
        return volume["target"], volume.get("source", "")
    source, target, *_ = volume.split(":")
    return target, source


def test_compose_prometheus_config_is_valid_and_scrapes_as_the_example_does(tmp_path):
    promtool = tool("promtool")
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    example = yaml.safe_load((ROOT / "dashboards/prometheus/prometheus.yml").read_text())
    paths = {job["job_name"]: job["metrics_path"] for job in config["scrape_configs"]}
    assert paths == {job["job_name"]: job["metrics_path"] for job in example["scrape_configs"]}
    # The shared families from one target; the per-process ones from every web container.
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["otp-tracker-shared"]["static_configs"] == [{"targets": ["web:8000"]}]
    assert jobs["otp-tracker"]["dns_sd_configs"][0]["names"] == ["web"]
    # promtool reads the rule file too: ours, where the config names it.
    shutil.copy(ROOT / "dashboards/prometheus/rules.yml", tmp_path / "rules.yml")
    config["rule_files"] = [str(tmp_path / "rules.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# The image and the runtime-only install -----------------------------------------------------


def test_dockerfile_is_multi_stage_non_root_and_checks_healthz():
    text = (DEPLOY / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) == 2
    assert "COPY --from=build /opt/otp-tracker /opt/otp-tracker" in text
    user = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.MULTILINE)
    assert "pip install --no-cache-dir ." in text and "[dev]" not in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "var", "tests"} <= set(ignored)


DEV_ONLY_IMPORTS = {
    "pytest": "pytest",
    "hypothesis": "hypothesis",
    "httpx2": "httpx2",
    "ruff": "ruff",
    "import-linter": "importlinter",
    "matplotlib": "matplotlib",
    "schemathesis": "schemathesis",
    "pyyaml": "yaml",
    "grafana-foundation-sdk": "grafana_foundation_sdk",
    "playwright": "playwright",
}
BLOCKER = """
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError("a dev-only package: " + name)
sys.meta_path.insert(0, Refuse())
import core.devrun, receiver.server, workers.main, workers.forward, tools.cli.app
from receiver.app import create_app
from core.settings import Settings
create_app(Settings.from_env({{"REDIS_URL": "redis://127.0.0.1:1/0"}}))
print("ok")
"""


def test_the_service_runs_on_its_runtime_dependencies_alone():
    """`make run` and the image install `.` without [dev]: no module the web process, the
    worker, the forwarder, the otp-tracker command or `make run` load may need a test, lint
    or preview tool."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(specs: list[str]) -> set[str]:
        return {re.split(r"[<>=\[ ]", spec)[0].lower() for spec in specs}

    runtime = names(project["dependencies"])
    dev_only = names(project["optional-dependencies"]["dev"]) - runtime
    assert dev_only <= set(DEV_ONLY_IMPORTS), dev_only - set(DEV_ONLY_IMPORTS)
    blocked = {DEV_ONLY_IMPORTS[name] for name in dev_only}
    code = BLOCKER.format(blocked=blocked)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
