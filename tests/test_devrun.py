"""`make run`'s launcher: Redis chosen or started, tokens kept stable across runs."""

from __future__ import annotations

import pytest
from redis import Redis

from core import devrun
from core.embedded import free_port


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_starts_its_own_embedded_redis_without_redis_url(in_tmp, monkeypatch):
    """Never a server that merely answers on 6379 (this machine runs one): its own, with AOF."""
    monkeypatch.setattr(devrun, "EMBEDDED_PORT", free_port())
    url, server = devrun.redis_url({})
    try:
        assert server is not None
        client = Redis.from_url(url)
        client.set("k", "v")
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert (in_tmp / "var" / "redis").is_dir()
        assert url != "redis://127.0.0.1:6379/0"
    finally:
        server.stop()


def test_the_url_used_is_left_for_operator_commands(in_tmp):
    path = devrun.remember("redis://:secret@127.0.0.1:6390/0")
    assert path.read_text().strip() == "redis://:secret@127.0.0.1:6390/0"
    assert path.stat().st_mode & 0o077 == 0


def test_uses_redis_url_when_set(in_tmp):
    assert devrun.redis_url({"REDIS_URL": "redis://example:1/0"}) == ("redis://example:1/0", None)


def test_tokens_are_generated_once_and_private(in_tmp):
    first = devrun.token("CALLBACK_TOKEN")
    assert len(first) >= 32 and devrun.token("CALLBACK_TOKEN") == first
    assert (in_tmp / "var" / "callback_token").stat().st_mode & 0o077 == 0
