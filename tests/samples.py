"""Provider samples for every test: callbacks shaped as Verihubs, Telnyx, Meta and Twilio send
them, their signatures, and the secrets the app is given to check those.

The builders make well-formed samples; a test that needs a malformed one mutates what they
return. Header names are lower case, as ASGI hands them to the app and the adapters read them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime

from nacl.signing import SigningKey
from twilio.request_validator import RequestValidator

from tests.support import CALLBACK_TOKEN

NOW = 1_795_000_000.0  # the "current" unix time of the sans-I/O tests (November 2026)
NOW_MS = int(NOW * 1000)
PUBLIC_URL = "https://otp.example.com"  # where the providers are told to call
PHONE = "+13125000000"  # a recipient's number: never to be logged
CUSTOM_CODE = "25565"  # an OTP code Telnyx sent: never to be logged either
JSON = {"content-type": "application/json"}
FORM = {"content-type": "application/x-www-form-urlencoded"}


def iso(seconds: float) -> str:
    """A provider's ISO 8601 time, in milliseconds (and as /messages serves first_seen)."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


# Verihubs ----------------------------------------------------------------------------------


def verihubs_url(product: str = "whatsapp-otp", token: str = CALLBACK_TOKEN) -> str:
    """The callback URL given to Verihubs as `callback_url`, per product."""
    return f"/callbacks/verihubs/{product}/{token}"


def verihubs_params(session_id: str, status: int | str) -> dict[str, str]:
    """A Verihubs callback's query (or form) fields: its session and status code."""
    return {"session_id": session_id, "status": str(status)}


# Telnyx Verify -----------------------------------------------------------------------------

SIGNING_KEY = SigningKey(bytes(range(32)))  # Telnyx's webhook signing key (ours, in tests)
TELNYX_PUBLIC_KEY = base64.b64encode(bytes(SIGNING_KEY.verify_key)).decode()
VERIFICATION = "12ade33a-21c0-473b-b055-b3c836e1c292"
EVENT_ID = "0ccc7b54-4df3-4bca-a65a-3da1ecc777f0"


def telnyx_event(
    event_type: str, verification: str = VERIFICATION, occurred: float = NOW - 2, **payload: object
) -> dict:
    """A Telnyx Verify webhook; `payload` overrides fields of data.payload (e.g. type, status)."""
    return {
        "data": {
            "event_type": event_type,
            "id": EVENT_ID,
            "occurred_at": iso(occurred),
            "payload": {
                "id": verification,
                "type": "sms",
                "delivery_status": "delivered",
                "custom_code": CUSTOM_CODE,
                "phone_number": PHONE,
                "status": "pending",
                "verify_profile_id": "12ade33a-21c0-473b-b055-b3c836e1c293",
                **payload,
            },
            "record_type": "event",
        },
        "meta": {"attempt": 1, "delivered_to": PUBLIC_URL + "/callbacks/telnyx"},
    }


def telnyx_headers(
    raw: bytes, *, key: SigningKey = SIGNING_KEY, timestamp: str | None = None, skew: int = 0
) -> dict[str, str]:
    """Telnyx's Ed25519 signature headers over `timestamp|raw`; the timestamp is now (+ skew
    seconds) unless given."""
    if timestamp is None:
        timestamp = str(int(time.time()) + skew)
    signature = key.sign(timestamp.encode() + b"|" + raw).signature
    return {
        "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
        "telnyx-timestamp": timestamp,
    }


# Meta WhatsApp Cloud API -------------------------------------------------------------------

META_APP_SECRET = "meta-app-secret"
META_VERIFY_TOKEN = "meta-verify-token"
WAMIDS = [
    "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA",
    "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJCODc5QjBGQzJBMjE0QkQwNEUA",
    "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBIyRkM1QUU4QjkwQTdERTAxOTgA",
    "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3NjdFNkFFNTM2RDVBRjE3NUQA",
]
PRICING = {"pricing_model": "PMP", "category": "authentication"}


def meta_status(wamid: str, name: str, at: int, **extra: object) -> dict:
    """One entry of value.statuses[]; `extra` adds or overrides fields (pricing, errors, ...).
    Sent, delivered and read carry their conversation, as Meta sends them."""
    status = {"id": wamid, "status": name, "timestamp": str(at), "recipient_id": "16505551234"}
    if name in ("sent", "delivered", "read"):
        status["conversation"] = {"id": "c1b5c5b0e6f0", "origin": {"type": "authentication"}}
    return {**status, **extra}


def meta_notification(*changes: list[dict]) -> dict:
    """One entry per list of statuses, as Meta groups them by business account."""
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": "106540352242922",
                            },
                            "statuses": statuses,
                        },
                    }
                ],
            }
            for statuses in changes
        ],
    }


def meta_signature(raw: bytes, secret: str = META_APP_SECRET) -> str:
    """The X-Hub-Signature-256 value: HMAC-SHA256 of the body with the app secret."""
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def meta_headers(raw: bytes, secret: str = META_APP_SECRET) -> dict[str, str]:
    return {"x-hub-signature-256": meta_signature(raw, secret)}


# Twilio ------------------------------------------------------------------------------------

TWILIO_AUTH_TOKEN = "twilio-auth-token"
TWILIO_URL = PUBLIC_URL + "/callbacks/twilio"
WHATSAPP_SENDER, SMS_SENDER = "whatsapp:+14155238886", "+14155238886"
SID = "SM" + "0123456789abcdef" * 2


def twilio_sid(n: int) -> str:
    """A distinct, well-formed MessageSid per number."""
    return f"SM{n:032x}"


def twilio_form(
    status: str, sender: str = WHATSAPP_SENDER, *, sid: str = SID, **extra: str
) -> dict[str, str]:
    """A Twilio status callback's form fields; `extra` adds some (e.g. ErrorCode)."""
    return {
        "AccountSid": "AC" + "f" * 32,
        "ApiVersion": "2010-04-01",
        "From": sender,
        "To": sender.replace("14155238886", "15017122661"),
        "MessageSid": sid,
        "MessageStatus": status,
        "SmsSid": sid,
        "SmsStatus": status,
        **extra,
    }


def twilio_headers(url: str, form: dict, token: str = TWILIO_AUTH_TOKEN) -> dict[str, str]:
    """X-Twilio-Signature over the URL Twilio called and every form field."""
    return {"x-twilio-signature": RequestValidator(token).compute_signature(url, form)}


# The app's configuration for all of them ---------------------------------------------------

SECRETS = {
    "TELNYX_PUBLIC_KEY": TELNYX_PUBLIC_KEY,
    "META_APP_SECRET": META_APP_SECRET,
    "META_VERIFY_TOKEN": META_VERIFY_TOKEN,
    "TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
}
