"""`otp-tracker`, run as a subprocess (`python -m tools.cli`, what the console script runs)
against a private Redis: each command's output, its errors (one line, no traceback) and its
exit codes (2 for a bad argument, 1 for an unreachable Redis or a missing thing)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from core.embedded import free_port
from core.events import Event
from core.failed import Failed
from core.queue import queue
from receiver.queue_writer import QueueWriter
from tests.batches import fail_batch, fix_acl
from tests.batches import work as apply_queued
from tests.samples import META_APP_SECRET, TWILIO_AUTH_TOKEN
from tests.support import ADMIN_TOKEN, CALLBACK_TOKEN, ROOT
from tools.stack import Stack

AT = 1_795_000_000_000  # 2026-11-18T...Z


def otp(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT):
    """Run the CLI with only `env` (and what a shell has: PATH, HOME) as its environment; the
    worktree's code importable from any directory, as the installed script's is."""
    base = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    base["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", *args],
        cwd=cwd,
        env={**base, "COLUMNS": "250", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_error(done, code: int, *words: str) -> None:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    for word in words:
        assert word in done.stderr, done.stderr


@pytest.fixture
def env(redis_server) -> dict[str, str]:
    return {"REDIS_URL": redis_server.url, "REDIS_TIMEOUT": "0.5"}


UNREACHABLE = {"REDIS_URL": f"redis://:hunter2hunter2@127.0.0.1:{free_port()}/0"}


# Finding what `make run` uses ---------------------------------------------------------------


def test_it_reads_redis_and_tokens_from_var_when_nothing_is_exported(redis, redis_server, tmp_path):
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "redis_url").write_text(redis_server.url + "\n")
    (tmp_path / "var" / "callback_token").write_text(CALLBACK_TOKEN)
    done = otp("doctor", env={}, cwd=tmp_path)
    assert f"{redis_server.url} answers" in done.stdout, done.stdout + done.stderr
    assert "CALLBACK_TOKEN   1 token(s), shortest 36 characters" in done.stdout
    # The environment wins over var/.
    done = otp("doctor", env=UNREACHABLE, cwd=tmp_path)
    assert "127.0.0.1" in done.stdout and redis_server.url not in done.stdout


def test_help_works_without_any_configuration(tmp_path):
    for args in ([], ["failed"], ["failed", "replay"], ["billing"], ["simulate"], ["doctor"]):
        done = otp(*args, "--help", env={"KEY_PREFIX": "not a prefix!"}, cwd=tmp_path)
        assert done.returncode == 0 and "Usage: otp-tracker" in done.stdout, done.stderr


def test_bad_configuration_and_unreachable_redis_are_one_line_errors(tmp_path):
    assert_error(otp("failed", "list", env={"KEY_PREFIX": "no spaces"}), 2, "KEY_PREFIX")
    done = otp("failed", "list", env=UNREACHABLE)
    assert_error(done, 1, "Redis at redis://***@127.0.0.1", "ConnectionError")
    assert "hunter2" not in done.stderr
    assert_error(otp("billing", env=UNREACHABLE), 1, "ConnectionError")
    (tmp_path / "var").mkdir()  # this directory's var/, empty: not the project's
    assert_error(otp("failed", "list", env={}, cwd=tmp_path), 1, "no Redis")


# failed -------------------------------------------------------------------------------------


def test_failed_list_show_and_replay_exactly(redis, env, failing, reader):
    events = [
        Event("verihubs", "whatsapp-otp", "s-1", 2, AT, AT),
        Event("verihubs", "whatsapp-otp", "s-2", 2, AT, AT),
    ]
    job_id = fail_batch(redis, failing, events, poisoned="s-2")
    listed = otp("failed", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert job_id in listed.stdout and "1 failed batches" in listed.stdout
    assert "s-2" not in listed.stdout  # the error names the key: its id is hidden
    (row,) = json.loads(otp("failed", "list", "--json", env=env).stdout)
    assert row["job_id"] == job_id and row["events"] == 2 and "no permissions" in row["error"]

    shown = otp("failed", "show", job_id, env=env)
    assert shown.returncode == 0 and "s-1" in shown.stdout and "delivered" in shown.stdout
    rows = json.loads(otp("failed", "show", job_id, "--json", env=env).stdout)
    assert [r["message_id"] for r in rows] == ["s-1", "s-2"]
    assert rows[0]["status"] == "delivered" and rows[0]["at"].startswith("2026-11-18T")

    fix_acl(redis)
    before = reader.counters()
    replayed = otp("failed", "replay", job_id, env=env)
    assert replayed.returncode == 0 and f"replayed {job_id}" in replayed.stdout
    apply_queued(redis, failing)
    assert reader.message("verihubs", "s-2").state == "delivered"
    gained = Counter(reader.counters()) - Counter(before)
    assert gained["started|verihubs|whatsapp-otp"] == 1  # s-2 only: s-1 was not counted again
    assert "no failed batches" in otp("failed", "list", env=env).stdout


def test_failed_replay_all_and_its_errors(redis, env, failing):
    fail_batch(redis, failing, [Event("verihubs", "whatsapp-otp", "a", 2, AT, AT)], "a")
    fail_batch(redis, failing, [Event("verihubs", "whatsapp-otp", "b", 2, AT, AT)], "b")
    assert_error(otp("failed", "replay", env=env), 2, "give one JOB, or --all")
    assert_error(otp("failed", "replay", "x", "--all", env=env), 2, "give one JOB, or --all")
    assert_error(otp("failed", "show", "../etc", env=env), 2, "job id")
    assert_error(otp("failed", "show", "f" * 32, env=env), 1, "no failed batch")
    assert_error(otp("failed", "replay", "f" * 32, env=env), 1, "no failed batch")
    done = otp("failed", "replay", "--all", env=env)
    assert done.returncode == 0 and "replayed 2 failed batches" in done.stdout
    assert queue(redis, failing).count == 2 and Failed(redis, failing.queue_name).list() == []


# billing ------------------------------------------------------------------------------------


def test_billing_by_month_and_zone_as_table_csv_and_json(redis, env, settings, reader):
    # 2026-11-30 20:00 UTC is already 2026-12-01 in Jakarta (UTC+7).
    late = 1_796_068_800_000
    events = [
        Event("verihubs", "whatsapp-otp", "m-1", 2, AT, AT),
        Event("verihubs", "whatsapp-otp", "m-2", 2, late, late),
    ]
    QueueWriter(redis, settings).write(events, Counter())
    apply_queued(redis, settings)
    done = otp("billing", "--month", "2026-11", env=env)
    assert done.returncode == 0, done.stderr
    assert "2026-11-18" in done.stdout and "2026-11-30" in done.stdout
    jakarta = otp("billing", "--month", "2026-11", "--tz", "Asia/Jakarta", "--csv", env=env)
    rows = list(csv.DictReader(io.StringIO(jakarta.stdout)))
    assert rows == [
        {"day": "2026-11-18", "provider": "verihubs", "product": "whatsapp-otp", "billable": "1"}
    ]
    december = json.loads(
        otp("billing", "--month", "2026-12", "--tz", "Asia/Jakarta", "--json", env=env).stdout
    )
    assert december["tz"] == "Asia/Jakarta" and december["days"][0]["day"] == "2026-12-01"


@pytest.mark.parametrize(
    "args, says",
    [
        (["--month", "2026-13"], "month must be YYYY-MM"),
        (["--tz", "Mars/Olympus"], "unknown time zone"),
        (["--from", "2026-11-05", "--to", "2026-11-01"], "from must not be after to"),
        (["--month", "2026-11", "--from", "2026-11-01"], "not both"),
        (["--from", "2024-01-01", "--to", "2026-01-01"], "at most 366 days"),
    ],
)
def test_billing_bad_arguments_exit_2(env, args, says):
    assert_error(otp("billing", *args, env=env), 2, says)


# doctor -------------------------------------------------------------------------------------


def test_doctor_passes_on_a_sound_redis_and_fails_on_what_operators_get_wrong(redis, env, tmp_path):
    redis.config_set("appendonly", "yes")
    try:
        good = otp("doctor", env={**env, "CALLBACK_TOKEN": CALLBACK_TOKEN}, cwd=tmp_path)
        assert good.returncode == 0, good.stdout
        lines = good.stdout.splitlines()
        for name in ("redis version", "persistence", "eviction policy", "clock skew"):
            assert any(line.startswith("ok") and name in line for line in lines), good.stdout
        redis.config_set("maxmemory-policy", "allkeys-lru")
        twilio = {**env, "TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN, "PUBLIC_URL": "http://x.test"}
        bad = otp("doctor", env=twilio, cwd=tmp_path)
        assert bad.returncode == 1
        assert any(
            line.startswith("fail") and "allkeys-lru" in line for line in bad.stdout.splitlines()
        )
        assert "warn  PUBLIC_URL" in bad.stdout and "ok    twilio" in bad.stdout
    finally:
        redis.config_set("maxmemory-policy", "noeviction")
        redis.config_set("appendonly", "no")
    down = otp("doctor", env=UNREACHABLE, cwd=tmp_path)
    assert down.returncode == 1 and "fail  redis" in down.stdout and "Traceback" not in down.stdout
    short = otp("doctor", env={**env, "ADMIN_TOKEN": "short"}, cwd=tmp_path)
    assert short.returncode == 1 and "fail  configuration" in short.stdout
    assert "ADMIN_TOKEN: token 1 of 1 is shorter than 32" in short.stdout


# simulate -----------------------------------------------------------------------------------


@pytest.fixture
def stack(redis_server, tmp_path):
    stack = Stack(
        redis_server.url,
        tmp_path,
        CALLBACK_TOKEN=CALLBACK_TOKEN,
        ADMIN_TOKEN=ADMIN_TOKEN,
        LOG_LEVEL="warning",
        META_APP_SECRET=META_APP_SECRET,
        TWILIO_AUTH_TOKEN=TWILIO_AUTH_TOKEN,
        **telnyx_public(tmp_path),
    )
    try:
        stack.start_web()
        stack.start_worker()
        yield stack
    finally:
        stack.stop()


def telnyx_public(tmp_path: Path) -> dict[str, str]:
    """`otp-tracker telnyx-keygen` in a project directory of the test's: the receiver is
    started with the public key it prints."""
    (tmp_path / "var").mkdir(exist_ok=True)
    done = otp("telnyx-keygen", env={}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("TELNYX_PUBLIC_KEY=")]
    assert oct((tmp_path / "var" / "telnyx_private_key").stat().st_mode & 0o777) == "0o600"
    return {"TELNYX_PUBLIC_KEY": line.split("=", 1)[1].split()[0]}


def test_simulate_signs_every_provider_and_sums_up_the_answers(stack, env, tmp_path, reader):
    secrets = {
        **env,
        "CALLBACK_TOKEN": CALLBACK_TOKEN,
        "META_APP_SECRET": META_APP_SECRET,
        "TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
    }
    args = ["simulate", "--url", stack.url, "--seconds", "3", "--rate", "20", "--speed", "20"]
    done = otp(*args, env=secrets, cwd=tmp_path)  # its var/ holds the Telnyx key
    assert done.returncode == 0, done.stdout + done.stderr
    assert "simulating verihubs, telnyx, meta, twilio" in done.stdout
    table = [line.replace("┃", "│") for line in done.stdout.splitlines()]
    cells = [line.strip("│ ").split("│") for line in table if line.strip().startswith("│")]
    rows = {row[0].strip(): [c.strip() for c in row[1:]] for row in cells}
    assert set(rows) >= {"provider", "verihubs", "telnyx", "meta", "twilio"}, done.stdout
    header = rows["provider"]
    for provider in ("telnyx", "meta", "twilio"):
        answered = dict(zip(header, rows[provider], strict=True))
        # Every signed callback accepted: no 401 (bad signature) nor 404 (closed).
        assert set(header) - {"200", "400", "total"} == set(), header
        assert int(answered["200"]) == int(answered["total"]) > 0
    counters = reader.counters()
    for provider in ("telnyx", "meta", "twilio"):
        assert any(k.startswith(f"received|{provider}|") for k in counters), provider


def test_simulate_refuses_what_it_cannot_sign_and_a_receiver_that_is_away(env, tmp_path):
    base = {**env, "CALLBACK_TOKEN": CALLBACK_TOKEN}
    assert_error(
        otp("simulate", "--providers", "meta", env=base, cwd=tmp_path), 2, "META_APP_SECRET"
    )
    assert_error(otp("simulate", "--providers", "sms", env=base, cwd=tmp_path), 2, "--providers")
    assert_error(otp("simulate", "--rate", "0", env=base, cwd=tmp_path), 2, "--rate")
    assert_error(otp("simulate", "--seconds", "x", env=base, cwd=tmp_path), 2, "--seconds")
    wrong = {**base, "TELNYX_PRIVATE_KEY": "AAAA", "TELNYX_PUBLIC_KEY": "x"}
    assert_error(otp("simulate", env=wrong, cwd=tmp_path), 2, "TELNYX")
    away = f"http://127.0.0.1:{free_port()}"
    assert_error(otp("simulate", "--url", away, env=base, cwd=tmp_path), 1, "not reachable")


# message, messages --------------------------------------------------------------------------


def write_and_apply(redis, settings, events: list[Event]) -> None:
    QueueWriter(redis, settings).write(events, Counter())
    apply_queued(redis, settings)


def test_message_shows_state_billable_and_history(redis, env, settings):
    write_and_apply(
        redis,
        settings,
        [
            Event("verihubs", "whatsapp-otp", "h-1", 0, AT, AT, raw="0"),
            Event("verihubs", "whatsapp-otp", "h-1", 6, AT + 1000, AT + 1000, raw="6"),
            Event("verihubs", "whatsapp-otp", "h-1", 6, AT + 1000, AT + 2000, raw="6"),
        ],
    )
    done = otp("message", "verihubs", "h-1", env=env)
    assert done.returncode == 0, done.stderr
    assert "failed" in done.stdout and "billable    no" in done.stdout
    assert "history: 3 callbacks" in done.stdout and "duplicate" in done.stdout
    view = json.loads(otp("message", "verihubs", "h-1", "--json", env=env).stdout)
    assert [h["outcome"] for h in view["history"]] == ["new", "new", "duplicate"]
    assert view["state"] == "failed" and view["billable"] is False
    assert_error(otp("message", "verihubs", "nope", env=env), 1, "no callback seen")
    assert_error(otp("message", "sms", "h-1", env=env), 2, "PROVIDER")
    assert_error(otp("message", "verihubs", "a b<", env=env), 2, "MESSAGE_ID")


def test_messages_filters_by_state_and_time_and_pages(redis, env, settings):
    now = int(__import__("time").time() * 1000)
    events = [Event("verihubs", "whatsapp-otp", f"f-{i}", 6, now, now + i) for i in range(3)]
    events.append(Event("verihubs", "whatsapp-otp", "ok-1", 2, now, now))
    write_and_apply(redis, settings, events)
    done = otp("messages", "--state", "failed", "--since", "1h", "--json", env=env)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)["messages"]
    assert [m["message_id"] for m in found] == ["f-2", "f-1", "f-0"]  # newest first
    first = otp("messages", "--state", "failed", "--limit", "2", env=env)
    assert first.returncode == 0 and "f-2" in first.stdout and "f-0" not in first.stdout
    (more,) = [line for line in first.stdout.splitlines() if line.startswith("more: --cursor ")]
    cursor = more.split()[-1]
    rest = otp("messages", "--state", "failed", "--limit", "2", "--cursor", cursor, env=env)
    assert "f-0" in rest.stdout and "more:" not in rest.stdout
    assert (
        json.loads(otp("messages", "--since", "2h", "--until", "1h", "--json", env=env).stdout)[
            "messages"
        ]
        == []
    )
    assert_error(otp("messages", "--state", "lost", env=env), 2, "unknown state")
    assert_error(otp("messages", "--since", "yesterday", env=env), 2, "since")
    assert_error(otp("messages", "--limit", "100000", env=env), 2, "--limit")
    assert_error(otp("messages", "--cursor", "!!!", env=env), 2, "--cursor")
    assert_error(otp("messages", "--since", "1h", "--until", "2h", env=env), 2, "before")
