"""The OpenAPI description of the HTTP interface, served at /openapi.json."""

from __future__ import annotations

from typing import Any


def document() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {"title": "OTP delivery tracker", "version": "1"},
        "paths": {},
    }
