"""The provider scorecard (core.scorecard), through GET /stats and the console page, over
messages applied by the real apply step with chosen provider and receipt times."""

from __future__ import annotations

import pytest

from core.clock import now_ms
from core.events import Event
from core.scorecard import percentile
from tests.support import ADMIN

S = 1000
NOW = now_ms()
T = NOW - 600 * S  # ten minutes ago: inside the last hour


def apply(store, provider, product, message_id, *steps, start=T):
    """steps: (code, seconds after start); each is received when it happened."""
    events = [
        Event(provider, product, message_id, code, start + dt * S, start + dt * S)
        for code, dt in steps
    ]
    store.apply(f"batch-{message_id}", events)


@pytest.fixture
def seeded(store):
    otp = ("verihubs", "whatsapp-otp")
    apply(store, *otp, "m-verified", (0, 0), (1, 1), (2, 2), (4, 10))
    apply(store, *otp, "m-delivered", (0, 0), (2, 4))
    apply(store, *otp, "m-failed", (0, 0), (6, 1))
    apply(store, *otp, "m-blocked", (0, 0), (1, 1), (9, 2))
    apply(store, *otp, "m-pending", (0, 0))
    apply(store, "verihubs", "whatsapp-message", "w-1", (0, 0), (1, 1), (2, 3))
    # Two days ago: outside every window below but 7d.
    apply(store, *otp, "m-old", (0, 0), (2, 1), start=NOW - 2 * 86_400 * S)


def rows(answer):
    return {(r["provider"], r["product"]): r for r in answer["products"]}


def test_stats_define_each_rate_over_the_messages_started_in_the_window(app_client, seeded):
    client = app_client()
    answer = client.get("/stats", params={"since": "1h"}, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    otp = rows(answer.json())["verihubs", "whatsapp-otp"]
    assert otp["started"] == 5
    assert (otp["delivered"], otp["verified"], otp["failed"]) == (2, 1, 2)
    assert otp["delivery_rate"] == pytest.approx(0.4)
    assert otp["verification_rate"] == pytest.approx(0.2)
    assert otp["failure_rate"] == pytest.approx(0.4)
    assert otp["failures"] == {"failed": 1, "blocked": 1}
    assert otp["states"] == {
        "blocked": 1, "delivered": 1, "failed": 1, "requested": 1, "verified": 1,
    }  # fmt: skip
    # From requested to the first delivery evidence: 2 s and 4 s.
    assert otp["latency"] == {"sample": 2, "p50_seconds": 2.0, "p95_seconds": 4.0}
    # Charged 0-5 while that is the state: verified, delivered, requested; not the failures.
    assert otp["billable"] == 3
    message = rows(answer.json())["verihubs", "whatsapp-message"]
    assert message["delivery_rate"] == 1.0
    assert message["verification_rate"] is None  # the product reports no verification
    assert message["latency"]["p50_seconds"] == 3.0


def test_the_window_decides_which_messages_count(app_client, seeded):
    client = app_client()
    week = rows(client.get("/stats", params={"since": "7d"}, headers=ADMIN).json())
    assert week["verihubs", "whatsapp-otp"]["started"] == 6
    assert week["verihubs", "whatsapp-otp"]["billable"] == 4
    earlier = {"since": "3d", "until": "1d"}
    old = rows(client.get("/stats", params=earlier, headers=ADMIN).json())
    assert set(old) == {("verihubs", "whatsapp-otp")}
    assert old["verihubs", "whatsapp-otp"]["started"] == 1
    answer = client.get("/stats", params={"since": "36h", "until": "1d"}, headers=ADMIN).json()
    assert answer["products"] == []
    assert answer["sample_limit"] == 200


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ({"since": "yesterday"}, "neither a duration"),
        ({"since": "2026-12-01T00:00:00"}, "no UTC offset"),
        ({"since": "1h", "until": "2h"}, "since must be before until"),
    ],
)
def test_bad_windows_are_400_with_what_is_wrong(app_client, query, says):
    answer = app_client().get("/stats", params=query, headers=ADMIN)
    assert answer.status_code == 400
    assert says in answer.json()["error"]


def test_stats_need_the_admin_token(app_client):
    assert app_client().get("/stats").status_code == 401


def test_percentiles_are_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([5.0], 95) == 5.0
    values = [float(n) for n in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95)) == (50.0, 95.0)


def test_the_console_scorecard_shows_the_same_figures(app_client, seeded):
    from tests.test_console import log_in

    client = app_client()
    log_in(client)
    page = client.get("/console/scorecard", params={"window": "1h"})
    assert page.status_code == 200
    assert "40.0%" in page.text and "20.0%" in page.text  # delivery, verification
    assert "blocked 1" in page.text and "failed 1" in page.text
    assert "n=2" in page.text
    bad = client.get("/console/scorecard", params={"window": "1y"})
    assert bad.status_code == 400 and "window must be one of" in bad.text
