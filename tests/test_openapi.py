"""The OpenAPI document against the code it describes.

The admin answers are core.read's dataclasses through `asdict`: each schema must list exactly
their fields, in order, all required, with matching types. And the answers the app really
gives (built as dicts in receiver/) must carry exactly the documented properties: the fuzz
test validates answers against the document, but an undocumented extra field passes there.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from datetime import date
from types import NoneType, UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from core.read import BillingRow, MessageView
from core.scorecard import Scorecard
from receiver import openapi
from receiver.app import create_app
from tests.samples import verihubs_params, verihubs_url
from tests.support import ADMIN, run_jobs

OTP_PATH = "/callbacks/verihubs/{product}/{token}"
JSON_TYPES = {str: "string", int: "integer", bool: "boolean", float: "number"}
DOCUMENT = openapi.document()
SCHEMAS = DOCUMENT["components"]["schemas"]


# The schemas against core.read's dataclasses.


def test_the_message_schema_is_the_message_view():
    _assert_describes(SCHEMAS["Message"], MessageView)


def test_the_stats_schema_is_the_scorecard():
    _assert_describes(SCHEMAS["Stats"], Scorecard)


def test_the_billing_rows_schema_is_the_billing_row():
    _assert_describes(SCHEMAS["Billing"]["properties"]["days"]["items"], BillingRow)


def _assert_describes(schema: dict[str, Any], cls: type) -> None:
    names = [f.name for f in fields(cls)]
    assert schema["type"] == "object"
    assert list(schema["properties"]) == names, cls.__name__
    # asdict emits every field, defaults included.
    assert set(schema["required"]) == set(names), cls.__name__
    hints = get_type_hints(cls)
    for name in names:
        _assert_type(schema["properties"][name], hints[name], f"{cls.__name__}.{name}")


def _assert_type(schema: dict[str, Any], hint: Any, where: str) -> None:
    if get_origin(hint) in (Union, UnionType):
        # `X | None` is X, nullable; no other union is written to an answer.
        (inner,) = [arg for arg in get_args(hint) if arg is not NoneType]
        assert NoneType in get_args(hint) and schema.get("nullable") is True, where
        _assert_type({k: v for k, v in schema.items() if k != "nullable"}, inner, where)
    elif schema.get("nullable"):
        raise AssertionError(f"{where} is nullable in the document, not in the code")
    elif is_dataclass(hint):
        _assert_describes(schema, hint)
    elif get_origin(hint) is list:
        assert schema["type"] == "array", where
        _assert_type(schema["items"], get_args(hint)[0], f"{where}[]")
    elif get_origin(hint) is dict:
        key, value = get_args(hint)
        assert key is str, where
        assert schema["type"] == "object", where
        _assert_type(schema["additionalProperties"], value, f"{where}{{}}")
    elif hint is date:
        # The admin answers write dates with date.isoformat().
        assert (schema["type"], schema["format"]) == ("string", "date"), where
    else:
        assert schema["type"] == JSON_TYPES[hint], where


# The answers the app gives against the document.


@pytest.fixture
def client(settings, store):
    with TestClient(create_app(settings, CollectorRegistry())) as client:
        yield client


def test_a_callbacks_answers_carry_exactly_the_documented_fields(client):
    accepted = client.get(verihubs_url(), params=verihubs_params("m-1", 2))
    refused = client.get(verihubs_url(), params={"session_id": "m-1"})
    assert (accepted.status_code, refused.status_code) == (200, 400)
    _assert_exactly_documented(_answer(OTP_PATH, "get", "200"), accepted.json())
    _assert_exactly_documented(_answer(OTP_PATH, "get", "400"), refused.json())


def test_the_admin_answers_carry_exactly_the_documented_fields(client, redis, settings):
    for status in (1, 2, 2, 42):  # a duplicate and an unknown code: every list filled
        answer = client.get(verihubs_url(), params=verihubs_params("m-1", status))
        assert answer.status_code == 200
    run_jobs(redis, settings)  # the store fixture bound the jobs to this Redis
    message = client.get("/messages/verihubs/m-1", headers=ADMIN).json()
    billing = client.get("/billing", headers=ADMIN).json()
    assert message["statuses"] and message["unknown"] and message["anomalies"]
    assert billing["days"]
    message_path = "/messages/{provider}/{message_id}"
    _assert_exactly_documented(_answer(message_path, "get", "200"), message)
    _assert_exactly_documented(_answer("/billing", "get", "200"), billing)


def _answer(path: str, method: str, status: str) -> dict[str, Any]:
    answer = DOCUMENT["paths"][path][method]["responses"][status]
    return answer["content"]["application/json"]["schema"]


def _assert_exactly_documented(schema: dict[str, Any], value: Any, where: str = "answer") -> None:
    """Every required property present and none undocumented, at every depth."""
    if "$ref" in schema:
        schema = SCHEMAS[schema["$ref"].removeprefix("#/components/schemas/")]
    if "properties" in schema:
        assert set(schema.get("required", [])) <= set(value), where
        assert set(value) <= set(schema["properties"]), where
        for name, item in value.items():
            _assert_exactly_documented(schema["properties"][name], item, f"{where}.{name}")
    elif isinstance(schema.get("additionalProperties"), dict):
        for name, item in value.items():
            _assert_exactly_documented(schema["additionalProperties"], item, f"{where}.{name}")
    elif schema.get("type") == "array":
        for index, item in enumerate(value):
            _assert_exactly_documented(schema["items"], item, f"{where}[{index}]")
