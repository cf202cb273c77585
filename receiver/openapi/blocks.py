"""Building blocks of the document: schema, parameter, answer and operation helpers."""

from __future__ import annotations

from typing import Any

from receiver.providers import fields

Schema = dict[str, Any]

ERROR = "#/components/schemas/Error"
ACCEPTED = "#/components/schemas/Accepted"

# Tags.
CALLBACKS = "callbacks"
ADMIN = "admin"
OPS = "operations"


# Schemas.


def ref(target: str) -> Schema:
    return {"$ref": target}


def string(description: str | None = None, **keywords: Any) -> Schema:
    schema: Schema = {"type": "string", **keywords}
    if description:
        schema["description"] = description
    return schema


def date() -> Schema:
    return string(format="date")


def date_time() -> Schema:
    return string(format="date-time")


def obj(properties: Schema, required: tuple[str, ...] = (), **keywords: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, **keywords}
    if required:
        schema["required"] = list(required)
    return schema


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def message_id(description: str) -> Schema:
    return string(
        description, minLength=1, maxLength=fields.MAX_ID, pattern=f"^{fields.ID_RE.pattern}$"
    )


def status_name(description: str, known: tuple[str, ...] = ()) -> Schema:
    if known:
        description += f" Known: {', '.join(known)}; any other name is recorded as unknown."
    return string(description, pattern=f"^{fields.NAME_RE.pattern}$")


# Requests.


def parameter(where: str, name: str, schema: Schema, description: str, **extra: Any) -> Schema:
    required = extra.pop("required", where == "path")
    return {
        "name": name,
        "in": where,
        "required": required,
        "description": description,
        "schema": schema,
        **extra,
    }


def json_content(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def body(content: Schema, description: str, required: bool = True) -> Schema:
    return {"description": description, "required": required, "content": content}


# Answers and operations.


def ok(description: str, content: Schema) -> Schema:
    return {"description": description, "content": content}


def error(description: str, headers: Schema | None = None) -> Schema:
    answer: Schema = {"description": description, "content": json_content(ref(ERROR))}
    if headers:
        answer["headers"] = headers
    return answer


def unavailable(description: str) -> Schema:
    return error(description, {"Retry-After": _retry_after("before retrying (RETRY_AFTER)")})


def throttled() -> Schema:
    """A source with AUTH_FAILURES_PER_MINUTE failed tokens: refused until its minute ends."""
    return error(
        "Too many wrong tokens from this address within a minute (AUTH_FAILURES_PER_MINUTE):"
        " refused, the token unchecked, until Retry-After.",
        {"Retry-After": _retry_after("until this address may try again")},
    )


def _retry_after(until: str) -> Schema:
    return {
        "description": f"Seconds to wait {until}.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }


def operation(operation_id: str, tag: str, summary: str, responses: Schema, **extra: Any) -> Schema:
    return {
        "operationId": operation_id,
        "tags": [tag],
        "summary": summary,
        **extra,
        "responses": responses,
    }
