"""Field validation shared by the provider adapters, sans I/O: JSON bodies (object, depth),
message ids, and which provider times are believed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from core import clock
from receiver.providers import fields
from tests.samples import NOW, NOW_MS, SID, VERIFICATION, WAMIDS
from tests.support import rejection


def nested(depth: int) -> bytes:
    """A JSON object nested exactly `depth` (>= 2) deep, objects and arrays alternating."""
    value: object = {}
    for level in range(depth - 2):
        value = {"a": value} if level % 2 else [value]
    return json.dumps({"a": value}).encode()


def test_json_object_depth_guard():
    assert fields.json_object(nested(32), 32)
    refused = rejection(fields.json_object, nested(33), 32)
    assert (refused.reason, refused.status_code) == ("json_too_deep", 400)
    assert fields.json_object(nested(3), 3) == {"a": [{}]}
    assert rejection(fields.json_object, nested(4), 3).reason == "json_too_deep"
    # Nesting past the parser's own limit is a 400 too, never a crash.
    assert rejection(fields.json_object, b"[" * 100_000 + b"]" * 100_000, 32).status_code == 400


def test_json_object_counts_only_the_deepest_branch():
    wide = {"a": [{"b": {}} for _ in range(1000)], "c": {"d": {"e": 1}}}
    assert fields.json_object(json.dumps(wide).encode(), 4) == wide
    assert rejection(fields.json_object, json.dumps(wide).encode(), 3).reason == "json_too_deep"


@pytest.mark.parametrize("raw", [b"{", b"", b"\xff", b"{'a': 1}", b"NaN"])
def test_json_object_refuses_invalid_json(raw):
    refused = rejection(fields.json_object, raw, 32)
    assert (refused.reason, refused.status_code) == ("invalid_json", 400)


@pytest.mark.parametrize("raw", [b"[]", b"1", b'"x"', b"null"])
def test_json_object_must_be_an_object(raw):
    refused = rejection(fields.json_object, raw, 32)
    assert (refused.reason, str(refused)) == ("invalid_json", "request body must be a JSON object")


def test_message_id_accepts_provider_ids_up_to_128_characters():
    for value in (VERIFICATION, WAMIDS[0], SID, "a" * 128, "a.b_c:d=e+f/g-h"):
        assert fields.message_id(value, "id") == value


@pytest.mark.parametrize(
    ("value", "name", "reason", "message"),
    [
        (None, "data.payload.id", "missing_payload_id", "data.payload.id is required"),
        ("", "MessageSid", "invalid_messagesid", "MessageSid is empty"),
        (12345, "statuses.id", "invalid_statuses_id", "must be a string"),
        ("a" * 129, "session_id", "invalid_session_id", "longer than 128 characters"),
        ("wamid.x\n", "statuses.id", "invalid_statuses_id", "characters outside"),
        ("id with space", "session_id", "invalid_session_id", "characters outside"),
        ("<script>", "session_id", "invalid_session_id", "characters outside"),
        ("caf\u00e9", "session_id", "invalid_session_id", "characters outside"),
    ],
)
def test_message_id_limits(value, name, reason, message):
    refused = rejection(fields.message_id, value, name)
    assert (refused.reason, refused.status_code) == (reason, 400)
    assert message in refused.message


def test_provider_times_are_believed_within_bounds_of_receipt():
    assert clock.plausible(NOW_MS - clock.MAX_AGE_MS, NOW_MS) == NOW_MS - clock.MAX_AGE_MS
    assert clock.plausible(NOW_MS + clock.MAX_AHEAD_MS, NOW_MS) == NOW_MS + clock.MAX_AHEAD_MS
    assert clock.plausible(NOW_MS - clock.MAX_AGE_MS - 1, NOW_MS) == NOW_MS
    assert clock.plausible(NOW_MS + clock.MAX_AHEAD_MS + 1, NOW_MS) == NOW_MS
    an_hour_ago = datetime.fromtimestamp(NOW, UTC) - timedelta(hours=1)
    assert fields.iso_ms(an_hour_ago.isoformat(), NOW_MS) == NOW_MS - 3_600_000
    assert fields.unix_ms(str(int(NOW) - 3600), NOW_MS) == NOW_MS - 3_600_000
    assert fields.unix_ms(int(NOW) - 3600, NOW_MS) == NOW_MS - 3_600_000
