"""/callbacks/verihubs/sms-otp through the real app against the private Redis: every SMS OTP
status code reaches its state, and exactly the charged ones are billed. (The Verihubs callback
in general, WhatsApp OTP first, is tested in test_receiver.py.)"""

from __future__ import annotations

from tests.samples import verihubs_params, verihubs_url
from tests.support import billing, message, run_jobs


def test_verihubs_sms_otp_codes_and_billing(app_client, redis, settings):
    client = app_client()
    url = verihubs_url("sms-otp")
    states = [
        "requested",
        "delivered",
        "verified",
        "unverified",
        "failed",
        "request_error",
        "rejected",
        "undelivered",
        "no_delivery_report",
        "blocked",
    ]
    for code in range(10):
        assert client.get(url, params=verihubs_params(f"sms-{code}", code)).status_code == 200
    run_jobs(redis, settings)
    seen = {
        code: (m["product"], m["state"], m["billable"])
        for code in range(10)
        for m in [message(client, "verihubs", f"sms-{code}")]
    }
    charged = {1, 2, 3, 7, 8}
    assert seen == {c: ("sms-otp", states[c], c in charged) for c in range(10)}
    assert billing(client) == {("verihubs", "sms-otp"): len(charged)}
