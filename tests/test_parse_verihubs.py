"""The Verihubs adapter, sans I/O: the SMS OTP status codes, and products it does not have."""

from __future__ import annotations

from core.model import Status
from receiver.providers import verihubs
from tests.samples import NOW_MS, verihubs_params
from tests.support import rejection, status_of


def test_verihubs_sms_otp_codes():
    expected = {
        0: Status.REQUESTED,
        1: Status.DELIVERED,
        2: Status.VERIFIED,
        3: Status.UNVERIFIED,
        4: Status.FAILED,
        5: Status.REQUEST_ERROR,
        6: Status.REJECTED,
        7: Status.UNDELIVERED,
        8: Status.NO_DELIVERY_REPORT,
        9: Status.BLOCKED,
    }
    for code, status in expected.items():
        event = verihubs.parse("sms-otp", verihubs_params("s-1", code), NOW_MS)
        assert status_of(event) is status
    refused = rejection(verihubs.parse, "voice-otp", verihubs_params("s", 1), NOW_MS)
    assert (refused.reason, refused.status_code) == ("unknown_product", 404)
