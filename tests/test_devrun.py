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


def test_starts_an_embedded_redis_when_none_answers(in_tmp, monkeypatch):
    monkeypatch.setattr(devrun, "LOCAL_REDIS", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setattr(devrun, "EMBEDDED_PORT", free_port())
    url, server = devrun.redis_url({})
    try:
        assert server is not None
        client = Redis.from_url(url)
        client.set("k", "v")
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert (in_tmp / "var" / "redis").is_dir()
    finally:
        server.stop()


def test_uses_redis_url_when_set(in_tmp):
    assert devrun.redis_url({"REDIS_URL": "redis://example:1/0"}) == ("redis://example:1/0", None)


def test_tokens_are_generated_once_and_private(in_tmp):
    first = devrun.token("CALLBACK_TOKEN")
    assert len(first) >= 32 and devrun.token("CALLBACK_TOKEN") == first
    assert (in_tmp / "var" / "callback_token").stat().st_mode & 0o077 == 0
