"""The receiver in-process (Starlette TestClient) against a real Redis."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from receiver.app import create_app
from tests.conftest import ADMIN_TOKEN, CALLBACK_TOKEN, run_jobs

OTP = f"/callbacks/verihubs/whatsapp-otp/{CALLBACK_TOKEN}"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def client(settings, store):
    with TestClient(create_app(settings, CollectorRegistry())) as client:
        yield client


def test_callback_is_stored_applied_and_readable(client, redis, settings):
    assert client.get(OTP, params={"session_id": "s-1", "status": "1"}).status_code == 200
    assert client.post(OTP, params={"session_id": "s-1", "status": "2"}).status_code == 200
    run_jobs(redis, settings)
    body = client.get("/messages/verihubs/s-1", headers=ADMIN).json()
    assert body["state"] == "delivered"
    assert [s["status"] for s in body["statuses"]] == ["sent", "delivered"]
    assert body["billable"] is True
