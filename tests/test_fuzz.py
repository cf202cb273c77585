"""The OpenAPI document against the code, and every operation fuzzed through it (schemathesis).

The document must list exactly the app's routes. Every generated request must get an answer
the document describes (status, content type, headers, body schema), never a 5xx (with Redis
up, not even a 503); every refusal is a JSON `{"error": ...}`, and every refused callback is
counted in otp_callbacks_rejected_total. Nothing is stored without authentication: each
request to a signed provider is sent as generated (its signature can only be wrong) and again
correctly signed, and the RQ queue must hold exactly the events of the authenticated ones.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.python import asgi
from starlette.testclient import TestClient

from core.queue import queue as core_queue
from core.settings import Settings
from receiver import openapi
from receiver.app import create_app
from receiver.console import PREFIX as CONSOLE
from tests.samples import (
    META_VERIFY_TOKEN,
    SECRETS,
    meta_headers,
    telnyx_headers,
    twilio_headers,
    verihubs_params,
    verihubs_url,
)
from tests.support import ADMIN, CALLBACK_TOKEN, make_settings, run_jobs

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
CALLBACKS = "/callbacks/"
VERIHUBS = "/callbacks/verihubs/{product}/{token}"
MESSAGE = "/messages/{provider}/{message_id}"
SEEDED = "seeded-1"
SIGNED = ("telnyx", "meta", "twilio")
ADMIN_PATHS = (MESSAGE, "/billing", "/stats")
CSV = {"Accept": "text/csv"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Per operation; FUZZ_EXAMPLES=1000 for a longer hunt.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))

OPERATIONS = [
    (path, method)
    for path, item in openapi.document()["paths"].items()
    for method in item
    if method in METHODS
]


def _settings(redis_url):
    return make_settings(redis_url, **SECRETS)


# The document and the routes.


@pytest.fixture
def client(redis, redis_server):
    with TestClient(create_app(_settings(redis_server.url), CollectorRegistry())) as client:
        yield client


def test_the_document_lists_exactly_the_routes(client):
    served = client.get("/openapi.json").json()
    documented = {
        (path, method.upper())
        for path, item in served["paths"].items()
        for method in item
        if method in METHODS
    }
    # Starlette answers HEAD wherever it answers GET: implied, not documented. The console's
    # HTML pages are for people (README, "Console"), not part of the API.
    routed = {
        (re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path), method)
        for route in client.app.routes
        if not route.path.startswith(CONSOLE)
        for method in route.methods - {"HEAD"}
    }
    assert documented == routed


def test_the_document_is_whole(client):
    served = client.get("/openapi.json").json()
    assert served["openapi"] == "3.0.3"
    schemas = served["components"]["schemas"]
    assert {ref.removeprefix("#/components/schemas/") for ref in _refs(served)} <= set(schemas)
    operations = [op for item in served["paths"].values() for m, op in item.items() if m in METHODS]
    assert len({op["operationId"] for op in operations}) == len(operations)
    for op in operations:
        for code, answer in op["responses"].items():
            if int(code) >= 400:
                assert answer["content"] == {"application/json": {"schema": _ref("Error")}}
            if code == "503":
                assert answer["headers"]["Retry-After"]["required"] is True


def _refs(node):
    if isinstance(node, dict):
        yield from [node["$ref"]] if "$ref" in node else []
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


# The fuzzer.


@dataclass
class Ledger:
    """What the app was asked and answered, to hold Redis to it after the run."""

    answers: Counter[int] = field(default_factory=Counter)
    # 4xx answers to paths under /callbacks/: each one must be counted as a refusal.
    refused_callbacks: int = 0
    # Per provider: events in 200 answers to authenticated requests, and those requests.
    accepted: Counter[str] = field(default_factory=Counter)
    authenticated: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Fuzz:
    schema: schemathesis.BaseSchema
    session: requests.Session
    settings: Settings


# Requests drawn with a credential too (a fuzzer never guesses one), so that what follows
# authentication is fuzzed as well: fixed parts, and whether the rest may be made invalid.
WITH_CREDENTIALS = {
    (VERIHUBS, "get"): [({"path_parameters": {"token": CALLBACK_TOKEN}}, True)],
    (VERIHUBS, "post"): [({"path_parameters": {"token": CALLBACK_TOKEN}}, True)],
    ("/callbacks/meta", "get"): [({"query": {"hub.verify_token": META_VERIFY_TOKEN}}, True)],
    (MESSAGE, "get"): [
        ({"headers": ADMIN}, True),
        (
            {"headers": ADMIN, "path_parameters": {"provider": "verihubs", "message_id": SEEDED}},
            False,
        ),
    ],
    ("/billing", "get"): [({"headers": ADMIN}, True), ({"headers": {**ADMIN, **CSV}}, True)],
    ("/stats", "get"): [({"headers": ADMIN}, True)],
}


@pytest.fixture
def fuzz(redis, redis_server):
    """A fresh app per operation: schemathesis ends ASGI lifespans after each test."""
    settings_ = _settings(redis_server.url)
    app = create_app(settings_, CollectorRegistry())
    # Schemathesis's in-process client; entering it starts the app's lifespan.
    with asgi.get_client(app) as session:
        served = session.get("/openapi.json")
        assert served.status_code == 200
        schema = schemathesis.openapi.from_dict(served.json())
        schema.app = app
        yield Fuzz(schema, session, settings_)
    asgi.shutdown_lifespans()


@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_fuzz(fuzz, redis, store, path, method):
    """`redis` starts empty: the counters and the queue then hold this operation's doing only
    (`store` binds the worker that applies the seeded message)."""
    if path == MESSAGE:
        _seed(fuzz, redis)
    ledger = Ledger()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=_strategy(fuzz.schema[path][method.upper()], path, method))
    def exchange(case):
        for response in _send(fuzz, case):
            _answer(ledger, case, response)

    exchange()
    _check_the_books(fuzz, redis, ledger, path)


def _strategy(operation, path, method):
    item = openapi.document()["paths"][path]
    has_inputs = any(k in item or k in item[method] for k in ("parameters", "requestBody"))
    variants = [({}, has_inputs), *WITH_CREDENTIALS.get((path, method), [])]
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    return st.one_of(
        operation.as_strategy(generation_mode=mode, **fixed)
        for fixed, negative in variants
        for mode in modes[: 1 + negative]
    )


def _seed(fuzz, redis):
    """One stored message, so that GET /messages meets its 200 too."""
    response = fuzz.session.get(verihubs_url(), params=verihubs_params(SEEDED, 2))
    assert response.status_code == 200
    run_jobs(redis, fuzz.settings)


def _send(fuzz, case):
    """The case as generated; to a signed provider, then the same bytes correctly signed."""
    response = case.call(session=fuzz.session)
    case.validate_response(response, checks=CHECKS)
    yield response, _authentic(case)
    provider = _provider(case)
    if provider in SIGNED:
        prepared = response.request.copy()
        _sign(provider, prepared)
        signed = schemathesis.Response.from_any(fuzz.session.send(prepared))
        case.validate_response(signed, checks=CHECKS)
        yield signed, True


def _provider(case):
    path = case.operation.path
    return path.split("/")[2] if path.startswith(CALLBACKS) else None


def _authentic(case):
    """Whether the request as generated carries a valid credential (only a drawn secret)."""
    if case.operation.path == VERIHUBS:
        return case.path_parameters.get("token") == CALLBACK_TOKEN
    return False


def _sign(provider, prepared):
    body = prepared.body or b""
    body = body.encode() if isinstance(body, str) else body
    if provider == "telnyx":
        prepared.headers.update(telnyx_headers(body))
    elif provider == "meta":
        prepared.headers.update(meta_headers(body))
    else:
        try:
            form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        except ValueError:  # not a form: refused as such whatever its signature
            form = {}
        prepared.headers.update(twilio_headers(prepared.url, form))


def _answer(ledger, case, sent):
    """Per answer: no 5xx, a JSON error, refusals and acceptances written in the ledger."""
    response, authenticated = sent
    status, request = response.status_code, response.request
    label = f"{request.method} {request.url} -> {status} {response.text[:200]!r}"
    ledger.answers[status] += 1
    # Redis is up: not even a 503 (backlog full, Redis unreachable) may happen.
    assert status < 500, label
    provider = _provider(case)
    if provider in SIGNED and request.method == "POST" and not authenticated:
        # Authentication comes before parsing: a generated signature only ever earns a 401
        # (Twilio signs the form's fields: a body that is no form is refused before).
        assert status in ((400, 401) if provider == "twilio" else (401,)), label
    if status >= 400:
        assert response.headers["content-type"] == ["application/json"], label
        assert isinstance(response.json().get("error"), str), label
    if 400 <= status < 500 and unquote(urlsplit(request.url).path).startswith(CALLBACKS):
        ledger.refused_callbacks += 1
    if provider is None or status != 200 or (request.method != "POST" and provider == "meta"):
        return
    assert authenticated, f"accepted without authentication: {label}"
    ledger.accepted[provider] += response.json()["events"]
    body = request.body or b""
    body = body.decode(errors="replace") if isinstance(body, bytes) else body
    ledger.authenticated.setdefault(provider, []).append(
        f"{unquote(request.url)}\n{body}\n{unquote(body)}"
    )


def _check_the_books(fuzz, redis, ledger, path):
    # Refusals are counted in memory first; a scrape writes this process's to Redis.
    assert fuzz.session.get("/metrics/shared").status_code == 200
    counters = redis.hgetall("otp:counters")
    rejected = sum(int(n) for name, n in counters.items() if name.startswith(b"rejected|"))
    assert rejected == ledger.refused_callbacks, (counters, ledger.answers)

    queue = fuzz.settings.queue_name
    jobs = core_queue(redis, fuzz.settings).jobs
    assert redis.llen(f"rq:queue:{queue}") == len(jobs)
    events = [event for job in jobs for event in job.args[0]]
    assert +Counter(event[0] for event in events) == +ledger.accepted
    for provider, _product, message_id, *_ in events:
        requests_ = ledger.authenticated[provider]
        assert any(message_id in text for text in requests_), (provider, message_id)

    # The run reached what lies behind authentication, not only the refusals before it.
    if path.startswith(CALLBACKS) or path in ADMIN_PATHS:
        assert ledger.answers[200] > 0, ledger.answers
