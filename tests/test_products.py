"""What each provider charges, per product, in the core's terms: `Product.is_billable` with no
provider flag, as the providers' billing pages say (core/products.py cites them); and every
code an adapter emits is a status of the products it files events under."""

from __future__ import annotations

import pytest

from core import products
from core.model import Product, Status
from receiver.providers import meta, telnyx, twilio

S = Status


def product(provider: str, name: str) -> Product:
    found = products.product(provider, name)
    assert found is not None, (provider, name)
    return found


@pytest.mark.parametrize(
    ("provider", "name", "seen", "billable"),
    [
        # Twilio SMS: charged once delivery was attempted, delivered or not; never failed.
        ("twilio", "sms", {S.REQUESTED, S.SENT}, True),
        ("twilio", "sms", {S.SENT, S.DELIVERED}, True),
        ("twilio", "sms", {S.SENT, S.UNDELIVERED}, True),
        ("twilio", "sms", {S.REQUESTED, S.FAILED}, False),
        ("twilio", "sms", {S.REQUESTED}, False),
        # Twilio WhatsApp: "undelivered WhatsApp messages are not charged".
        ("twilio", "whatsapp", {S.SENT, S.UNDELIVERED}, False),
        ("twilio", "whatsapp", {S.SENT}, True),
        ("twilio", "whatsapp", {S.SENT, S.DELIVERED, S.READ}, True),
        ("twilio", "whatsapp", {S.FAILED}, False),
        # Twilio RCS: not documented; assumed as WhatsApp.
        ("twilio", "rcs", {S.SENT, S.UNDELIVERED}, False),
        ("twilio", "rcs", {S.SENT, S.READ}, True),
        # Telnyx: a send that went out is charged its channel cost, whatever the outcome.
        ("telnyx", "sms", {S.SENT}, True),
        ("telnyx", "sms", {S.SENT, S.DELIVERED}, True),
        ("telnyx", "sms", {S.SENT, S.NO_DELIVERY_REPORT}, True),
        ("telnyx", "sms", {S.SENT, S.UNVERIFIED}, True),
        ("telnyx", "sms", {S.SENT, S.DELIVERED, S.VERIFIED}, True),
        ("telnyx", "dtmf_confirm", {S.UNVERIFIED}, True),
        # Our assumption: a send Telnyx or the upstream provider failed is not charged.
        ("telnyx", "sms", {S.SENT, S.UNDELIVERED}, False),
        ("telnyx", "sms", {S.FAILED}, False),
        ("telnyx", "dtmf_confirm", {S.UNDELIVERED}, False),  # the call was not answered
        # Meta: "only charged when a template message is delivered".
        ("meta", "whatsapp", {S.SENT}, False),
        ("meta", "whatsapp", {S.SENT, S.DELIVERED}, True),
        ("meta", "whatsapp", {S.READ}, True),
        ("meta", "whatsapp", {S.SENT, S.FAILED}, False),
        # Verihubs V2: "This status will be charged." per code; V2 does not charge 6 Failed.
        ("verihubs", "whatsapp-otp", {S.REQUESTED}, True),
        ("verihubs", "whatsapp-otp", {S.SENT, S.UNVERIFIED}, True),
        ("verihubs", "whatsapp-otp", {S.SENT, S.FAILED}, False),
        ("verihubs", "whatsapp-message", {S.READ}, True),
        ("verihubs", "whatsapp-message", {S.INVALID_DATA}, False),
        ("verihubs", "sms-otp", {S.REQUESTED}, False),
        ("verihubs", "sms-otp", {S.REQUESTED, S.UNDELIVERED}, True),
        ("verihubs", "sms-otp", {S.REQUESTED, S.NO_DELIVERY_REPORT}, True),
        ("verihubs", "sms-otp", {S.REQUESTED, S.FAILED}, False),
    ],
)
def test_what_each_product_charges(provider, name, seen, billable):
    assert product(provider, name).is_billable(seen) is billable


def test_the_charged_sets():
    whatsapp = {S.SENT, S.DELIVERED, S.READ}
    telnyx_charged = {S.SENT, S.DELIVERED, S.NO_DELIVERY_REPORT, S.UNVERIFIED, S.VERIFIED}
    assert product("twilio", "sms").charged == whatsapp | {S.UNDELIVERED}
    assert product("twilio", "whatsapp").charged == whatsapp
    assert product("twilio", "rcs").charged == whatsapp
    for channel in products.TELNYX_CHANNELS:
        assert product("telnyx", channel).charged == telnyx_charged
    assert product("meta", "whatsapp").charged == {S.DELIVERED, S.READ}


@pytest.mark.parametrize(
    ("provider", "channels", "codes"),
    [
        ("twilio", products.TWILIO_CHANNELS, twilio.STATUS_CODES.values()),
        (
            "telnyx",
            products.TELNYX_CHANNELS,
            [
                *telnyx.EVENT_CODES.values(),
                *telnyx.FAILURE_CODES.values(),
                *telnyx.COMPLETION_CODES.values(),
                products.CODE_OF[S.NO_DELIVERY_REPORT],
            ],
        ),
        ("meta", (meta.PRODUCT,), meta.STATUS_CODES.values()),
    ],
)
def test_every_code_an_adapter_emits_is_known_to_its_products(provider, channels, codes):
    for channel in channels:
        assert all(product(provider, channel).status(c) is not None for c in codes), channel
