"""What the real receiver process logs, over the wire: the message ids of callbacks,
accepted or refused, but never a phone number, an OTP code, or a wamid (which encodes the
recipient's number)."""

from __future__ import annotations

import json
import time

import httpx2 as httpx
from nacl.signing import SigningKey

from tests.samples import (
    CUSTOM_CODE,
    JSON,
    PHONE,
    PUBLIC_URL,
    SECRETS,
    TWILIO_URL,
    WAMIDS,
    meta_headers,
    meta_notification,
    meta_status,
    telnyx_event,
    telnyx_headers,
    twilio_form,
    twilio_headers,
    twilio_sid,
)
from tests.support import live_receiver


def test_phone_numbers_and_codes_stay_out_of_the_logs(redis, redis_server, capfd):
    event = telnyx_event("verify.delivered", "v-logged", time.time())
    signed = json.dumps(event).encode()
    del event["data"]["payload"]["id"]
    no_id = json.dumps(event).encode()
    meta_raw = json.dumps(
        meta_notification([meta_status(WAMIDS[0], "sent", int(time.time()))])
    ).encode()
    form = twilio_form("delivered", sid=twilio_sid(8))
    with live_receiver(redis_server.url, **SECRETS, PUBLIC_URL=PUBLIC_URL) as url:
        telnyx_url = url + "/callbacks/telnyx"
        codes = [
            httpx.post(
                telnyx_url, content=signed, headers={**JSON, **telnyx_headers(signed)}
            ).status_code,
            # Refused ones too: another key, and a signed payload without a verification id.
            httpx.post(
                telnyx_url,
                content=signed,
                headers={**JSON, **telnyx_headers(signed, key=SigningKey.generate())},
            ).status_code,
            httpx.post(
                telnyx_url, content=no_id, headers={**JSON, **telnyx_headers(no_id)}
            ).status_code,
            httpx.post(
                url + "/callbacks/meta",
                content=meta_raw,
                headers=meta_headers(meta_raw),
            ).status_code,
            httpx.post(
                url + "/callbacks/twilio",
                data=form,
                headers=twilio_headers(TWILIO_URL, form),
            ).status_code,
        ]
    assert codes == [200, 401, 400, 200, 200]

    captured = capfd.readouterr()  # the process has exited: every line is flushed
    logged = captured.out + captured.err
    lines = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    callbacks = [
        line for line in lines if line.get("event") == "request" and line["route"] != "/healthz"
    ]
    assert [(r["route"], r["status"]) for r in callbacks] == [
        ("/callbacks/telnyx", 200),
        ("/callbacks/telnyx", 401),
        ("/callbacks/telnyx", 400),
        ("/callbacks/meta", 200),
        ("/callbacks/twilio", 200),
    ]
    assert callbacks[0]["message_id"] == "v-logged"  # the ids are logged ...
    for number in (PHONE, PHONE[1:], "15017122661", "14155238886", "16505551234"):
        assert number not in logged  # ... the phone numbers are not
    assert f'"{CUSTOM_CODE}"' not in logged and "custom_code" not in logged
    # A wamid encodes the recipient's number (base64): only a digest of it is logged.
    assert WAMIDS[0] not in logged and WAMIDS[0].removeprefix("wamid.") not in logged
    assert callbacks[3]["message_id"].startswith("sha256:")
