"""What the README says, held to the code: the Verihubs code table, which field wins in a
callback, the default billing range, and the README's example requests run as printed."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from core import products
from receiver.app import create_app
from tests.samples import verihubs_url
from tests.support import ADMIN, CALLBACK_TOKEN, ROOT, message, run_jobs

README = (ROOT / "README.md").read_text()
COLUMNS = {
    "OTP V2 (`whatsapp-otp`)": "whatsapp-otp",
    "Message V2 (`whatsapp-message`)": "whatsapp-message",
}


@pytest.fixture
def client(settings, store):
    with TestClient(create_app(settings, CollectorRegistry())) as client:
        yield client


def verihubs_table() -> tuple[list[str], list[list[str]]]:
    start = README.index("| code | canonical status | meaning")
    lines = README[start:].split("\n\n", 1)[0].splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return cells[0], cells[2:]


def test_the_verihubs_code_table_is_core_products():
    header, rows = verihubs_table()
    assert [int(row[0]) for row in rows] == list(range(12))
    for row in rows:
        code, canonical = int(row[0]), row[1].strip("`")
        for column, name in COLUMNS.items():
            product = products.product("verihubs", name)
            said = row[header.index(column)]
            status = product.status(code)
            if said == "not a code of this product":
                assert status is None, (code, name)
                continue
            assert status is not None and status.value == canonical, (code, name)
            assert said == ("charged" if status in product.charged else "not charged"), (code, name)


def test_the_query_wins_over_the_body_field_by_field(client, redis, settings):
    url = verihubs_url()
    # The query's status, the body's session_id.
    answer = client.post(url + "?status=2", data={"session_id": "prec-1", "status": "1"})
    assert answer.status_code == 200
    answer = client.post(url + "?session_id=prec-2&status=3", json={"status": 1})
    assert answer.status_code == 200
    run_jobs(redis, settings)
    assert message(client, "verihubs", "prec-1")["state"] == "delivered"
    assert message(client, "verihubs", "prec-2")["state"] == "read"
    # Twice in the query, or twice in the form: ambiguous.
    for request in (
        client.post(url + "?session_id=prec-3&status=1&status=2"),
        client.post(
            url,
            content="session_id=prec-3&status=1&status=2",
            headers={"content-type": "application/x-www-form-urlencoded"},
        ),
    ):
        assert request.status_code == 400 and request.json()["error"].startswith("status is given")


def test_the_default_billing_range_is_as_the_readme_says(client):
    assert "Default: the 31 days ending today in the zone (or ending `to`)" in README
    today = datetime.now(UTC).date()  # BILLING_TIMEZONE's default zone

    def range_of(**params: str) -> tuple[str, str]:
        body = client.get("/billing", params=params, headers=ADMIN).json()
        return body["from"], body["to"]

    assert range_of() == ((today - timedelta(days=30)).isoformat(), today.isoformat())
    assert range_of(to="2026-03-31") == ("2026-03-01", "2026-03-31")
    start = (today - timedelta(days=100)).isoformat()
    assert range_of(**{"from": start}) == (start, today.isoformat())  # from alone: to today


def test_the_readme_example_requests_work_as_printed(client, redis, settings):
    """The README's curl lines, through the app, with var/'s tokens as the tests' tokens."""
    block = README[README.index('```sh\ncurl "http://127.0.0.1:8000') :].split("```", 2)[1]
    lines = [line for line in block.splitlines() if line.startswith("curl")]
    assert len(lines) == 3
    replace = {
        "$(cat var/callback_token)": CALLBACK_TOKEN,
        "$(cat var/admin_token)": ADMIN["Authorization"].split()[1],
        "http://127.0.0.1:8000": "",
    }
    answers = []
    for line in lines:
        for old, new in replace.items():
            line = line.replace(old, new)
        headers = dict(h.split(": ", 1) for h in re.findall(r'-H "([^"]+)"', line))
        url = re.findall(r'"?(/[^" ]+)"?$', line)[0]
        answers.append(client.get(url, headers=headers))
        run_jobs(redis, settings)
    callback, view, csv = answers
    assert callback.json() == {"status": "accepted", "events": 1}
    assert view.json()["state"] == "delivered"
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0] == "day,provider,product,billable"
