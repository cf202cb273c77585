"""Bounded, validated fields shared by every provider parser (sans I/O)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from core.clock import plausible
from receiver.errors import Rejected

MAX_ID = 128
# Provider ids (UUIDs, wamids, SIDs): nothing that could smuggle separators or markup into
# keys, logs or the admin API.
ID_RE = re.compile(r"[A-Za-z0-9._:=+/-]+")
NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def message_id(value: object, name: str) -> str:
    if value is None:
        raise Rejected(f"missing_{_reason(name)}", f"{name} is required")
    if not isinstance(value, str):
        raise Rejected(f"invalid_{_reason(name)}", f"{name} must be a string")
    if not value:
        raise Rejected(f"invalid_{_reason(name)}", f"{name} is empty")
    if len(value) > MAX_ID:
        raise Rejected(f"invalid_{_reason(name)}", f"{name} is longer than {MAX_ID} characters")
    if not ID_RE.fullmatch(value):
        raise Rejected(
            f"invalid_{_reason(name)}", f"{name} has characters outside [A-Za-z0-9._:=+/-]"
        )
    return value


def _reason(name: str) -> str:
    # "data.payload.id" -> "payload_id": reasons stay short, bounded metric labels.
    return "_".join(name.split(".")[-2:]).replace("-", "_").lower()


def status_name(value: object, name: str) -> str:
    """A provider's status or event name; an unexpected one is a string we do not know."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise Rejected("invalid_status", f"{name} must be a name of at most 64 characters")
    return value


def json_object(body: bytes, max_depth: int) -> dict[str, Any]:
    """Parse a JSON object whose nesting stays within `max_depth`."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Rejected("invalid_json", "request body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise Rejected("invalid_json", "request body must be a JSON object")
    if _depth(data) > max_depth:
        raise Rejected("json_too_deep", f"JSON nesting is deeper than {max_depth}")
    return data


def _depth(value: object) -> int:
    depth, level = 0, [value]
    while level:
        depth += 1
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        ]
    return depth


def get(data: Mapping[str, Any], path: str) -> Any:
    """`a.b.c` in nested objects; None where any step is missing or not an object."""
    node: Any = data
    for step in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(step)
    return node


def iso_ms(value: object, received_ms: int) -> int:
    """Milliseconds of an ISO 8601 time with a zone; receipt time when absent or unreadable."""
    if not isinstance(value, str) or len(value) > 64:
        return received_ms
    try:
        moment = datetime.fromisoformat(value)
        at = int(moment.timestamp() * 1000)
    except (ValueError, OverflowError):
        return received_ms
    return plausible(at, received_ms) if moment.tzinfo else received_ms


def unix_ms(value: object, received_ms: int) -> int:
    """Milliseconds of a unix time in seconds (a string or a number of up to 12 digits)."""
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        return received_ms
    return plausible(int(text) * 1000, received_ms)
