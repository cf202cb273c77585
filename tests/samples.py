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


# The delivery status event as "Delivery status Payload" of
# https://developers.telnyx.com/docs/identity/verify/receiving-webhooks shows verify.delivered.
# Telnyx gives no example of verify.sent or verify.failed: the same fields, with a
# `delivery_status` of "Delivery statuses" there.
DELIVERY_STATUS = {"verify.sent": "sent", "verify.failed": "sending_failed"}


def telnyx_event(
    event_type: str, verification: str = VERIFICATION, occurred: float = NOW - 2, **payload: object
) -> dict:
    """A Telnyx Verify webhook; `payload` overrides fields of data.payload (e.g. type, status,
    delivery_status: by default that of the event type)."""
    fields = {
        "created_at": "2025-10-08T17:16:08.436941",
        "custom_code": CUSTOM_CODE,
        "delivery_status": DELIVERY_STATUS.get(event_type, "delivered"),
        "extension": None,
        "failed_attempts": 0,
        "id": verification,
        "mccmnc": None,
        "phone_number": PHONE,
        "profile_id": "49000192-1bdb-c56f-3de7-e008ef6da16b",
        "record_type": "verification",
        "status": "pending",
        "timeout_secs": None,
        "type": "sms",
        "updated_at": "2025-10-08T17:16:09.592765",
    }
    data = {"event_type": event_type, "id": EVENT_ID, "occurred_at": iso(occurred)}
    data |= {"payload": {**fields, **payload}, "record_type": "event"}
    return {"data": data, "meta": {"attempt": 1, "delivered_to": PUBLIC_URL + "/callbacks/telnyx"}}


# A completion as "DTMF webhook payloads" of the dtmf-confirm page shows `accepted` and `invalid`
# (no occurred_at); `expired` and `error`, named by its outcome table, have no example: the same.
def telnyx_completion(status: str, verification: str = VERIFICATION) -> dict:
    payload = {"id": verification, "phone_number": "+13035551234", "status": status}
    payload |= {"type": "dtmf_confirm", "verify_profile_id": "YOUR_PROFILE_ID"}
    return {"data": {"event_type": "verification.complete", "payload": payload}}


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
    # An extra of None leaves the field out (a delivered status without its conversation).
    return {k: v for k, v in {**status, **extra}.items() if v is not None}


def meta_pricing(
    kind: str | None = "regular",
    billable: bool | None = True,
    model: str = "PMP",
    category: str = "marketing",
) -> dict:
    """A pricing object as "Webhooks" of Meta's pricing page shows it; None leaves a field out
    (CBP-era webhooks had no `type`)."""
    pricing = {"billable": billable, "pricing_model": model, "type": kind, "category": category}
    return {k: v for k, v in pricing.items() if v is not None}


_HEALTHY = "This message was not delivered to maintain healthy ecosystem engagement."
META_ERROR = {
    "code": 131049,
    "title": _HEALTHY,
    "message": _HEALTHY,
    "error_data": {
        "details": "In order to maintain a healthy ecosystem engagement, the message failed to "
        "be delivered."
    },
    "href": "/documentation/business-messaging/whatsapp/support/error-codes",
}
# Meta's documented statuses ("Examples" of the status webhook reference; delivered from
# "Status messages webhooks" of the business-scoped user ids page, without its conversation).
# Meta publishes no correct read body: that one was recorded (pywa's test data, CBP-era); nor a
# played one: the status fields alone, as no pricing comes with it.
META_EXAMPLES = {
    "sent": {
        "conversation": {
            "id": "72b14d6bd5407799e66f64d1b338e567",
            "expiration_timestamp": "1750116480",
            "origin": {"type": "marketing"},
        },
        "pricing": meta_pricing(),
    },
    "delivered": {"conversation": None, "pricing": meta_pricing()},
    "read": {
        "conversation": {"id": "7270432eae37498234f4444b35ffc5", "origin": {"type": "service"}},
        "pricing": meta_pricing(None, model="CBP", category="service"),
    },
    "played": {},
    "failed": {"errors": [META_ERROR]},
}


def meta_example(name: str, at: int, wamid: str = WAMIDS[0]) -> dict:
    """A documented status of META_EXAMPLES at a time of ours."""
    return meta_status(wamid, name, at, **META_EXAMPLES[name])


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


# Twilio's shapes per channel and status. SMS sent: "How are status callback requests sent?" of
# https://www.twilio.com/docs/messaging/guides/track-outbound-message-status (six fields); SMS
# delivered: "Example Callback for Status 'Delivered'" of .../guides/outbound-message-logging (a
# Messaging Service's). WhatsApp sent, delivered and read: bodies recorded in public code (Twilio
# documents none). Twilio gives no example of the others, nor of RCS: the same fields, plus what
# "Twilio's request to the StatusCallback URL" (message-resource) lists: ErrorCode when failed
# or undelivered, RawDlrDoneDate on SMS delivered and undelivered, ChannelStatusMessage on a
# failed non-SMS one (codes and texts illustrative). An RCS one has WhatsApp's fields with plain
# numbers (its address form is not in the docs read): only ChannelPrefix tells it from SMS.
def twilio_callback(status: str, channel: str = "sms", *, sid: str = SID) -> dict[str, str]:
    extra: dict[str, str] = {}
    if status in ("failed", "undelivered"):
        extra["ErrorCode"] = "30003" if status == "undelivered" else "30008"
    if channel == "sms":
        if status in ("delivered", "undelivered"):
            extra["RawDlrDoneDate"] = "2611241200"
        if status == "delivered":
            extra["MessagingServiceSid"] = "MG" + "0123456789abcdef" * 2
        form = twilio_form(status, SMS_SENDER, sid=sid, **extra)
        if status == "sent":
            form = {k: v for k, v in form.items() if k not in ("ApiVersion", "To")}
        return form
    extra |= {"ChannelToAddress": "+15017122661", "ChannelPrefix": channel}
    if status in ("delivered", "read"):
        extra["EventType"] = status.upper()
    if status == "delivered":
        extra["ChannelInstallSid"] = "XE" + "0123456789abcdef" * 2
    if status == "failed":
        extra["ChannelStatusMessage"] = "Message failed to send"
    sender = WHATSAPP_SENDER if channel == "whatsapp" else SMS_SENDER
    return twilio_form(status, sender, sid=sid, **extra)


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
