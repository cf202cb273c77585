"""Where callbacks may come from, through the real app: per-provider source allowlists
(*_ALLOWED_NETWORKS), X-Forwarded-For believed only from trusted proxies, and an invalid
network refusing to start."""

from __future__ import annotations

import json
import time

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from receiver.app import create_app
from tests.samples import telnyx_event, verihubs_params, verihubs_url
from tests.support import QUEUE, assert_refused, make_settings

VERIHUBS = verihubs_url("whatsapp-otp")
ONE = verihubs_params("src-1", 1)


def test_allowlist_refuses_other_sources(app_client, redis):
    outside = app_client(VERIHUBS_ALLOWED_NETWORKS="10.0.0.0/8")  # address "testclient"
    response = outside.get(VERIHUBS, params=ONE)
    assert response.json() == {"error": "forbidden"}
    assert_refused(response, redis, outside, 403, "source_not_allowed")
    other = app_client(("192.168.1.5", 1234), VERIHUBS_ALLOWED_NETWORKS="10.0.0.0/8")
    assert other.get(VERIHUBS, params=ONE).status_code == 403
    inside = app_client(("10.1.2.3", 1234), VERIHUBS_ALLOWED_NETWORKS="10.0.0.0/8")
    assert inside.get(VERIHUBS, params=ONE).status_code == 200
    assert redis.llen(QUEUE) == 1


def test_allowlist_is_per_provider(app_client):
    client = app_client(
        ("192.168.1.5", 1234),
        VERIHUBS_ALLOWED_NETWORKS="10.0.0.0/8",
        ALLOW_UNAUTHENTICATED_CALLBACKS="1",
    )
    raw = json.dumps(telnyx_event("verify.sent", "v-any-source", time.time())).encode()
    assert client.post("/callbacks/telnyx", content=raw).status_code == 200
    assert client.get(VERIHUBS, params=ONE).status_code == 403


def test_forwarded_address_is_checked_behind_a_trusted_proxy(app_client, redis):
    proxy = ("172.16.0.1", 40000)
    client = app_client(proxy, VERIHUBS_ALLOWED_NETWORKS="10.0.0.0/8", TRUSTED_PROXIES="172.16.0.1")
    assert (
        client.get(VERIHUBS, params=ONE, headers={"X-Forwarded-For": "10.1.2.3"}).status_code == 200
    )
    outside = {"X-Forwarded-For": "192.168.1.5"}
    assert client.get(VERIHUBS, params=ONE, headers=outside).status_code == 403
    # A caller cannot slip an allowed address in front: the proxy appends the real one.
    spoofed = {"X-Forwarded-For": "10.1.2.3, 192.168.1.5"}
    assert client.get(VERIHUBS, params=ONE, headers=spoofed).status_code == 403
    assert redis.llen(QUEUE) == 1


def test_forwarded_address_is_ignored_without_trusted_proxies(app_client, redis):
    client = app_client(("192.168.1.5", 1234), VERIHUBS_ALLOWED_NETWORKS="10.0.0.0/8")
    forged = {"X-Forwarded-For": "10.1.2.3"}
    assert_refused(
        client.get(VERIHUBS, params=ONE, headers=forged), redis, client, 403, "source_not_allowed"
    )


def test_invalid_cidr_stops_start_up(redis_server):
    settings = make_settings(redis_server.url, TELNYX_ALLOWED_NETWORKS="10.0.0.0/8,10.0.0.300/32")
    app = create_app(settings, CollectorRegistry())
    with pytest.raises(ValueError, match=r"10\.0\.0\.300/32"), TestClient(app):
        pass
