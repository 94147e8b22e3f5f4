"""What every request message must hold, checked on both fronts before a servicer sees it.

    raise_if_invalid(request_violations(request))   # in the REST bridge and the gRPC interceptor

- Strings hold no NUL character (PostgreSQL's text cannot) and at most MAX_STRING_CHARS characters
  (the width of the columns ids and names are kept in), unless STRING_LIMITS gives the field its own.
- JSON values (Struct, Value, ListValue: `metadata`, credential `properties`, mutation `data`) hold
  finite numbers, keys and strings without NUL, and nest at most MAX_JSON_DEPTH levels: Headwater
  answers them inside other messages, and a gRPC client's parser stops at 100 message levels.
- Bytes (the proxy's body) pass untouched.

A violation names the field as the servicers do: `sync.name`, `filters[0].sync_id`,
`credential.metadata.plan.tier`.
"""

from __future__ import annotations

import math

from google.protobuf import struct_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

MAX_STRING_CHARS = 255
MAX_JSON_DEPTH = 20
# Fields whose strings may be longer (None: only the request size bounds them).
STRING_LIMITS: dict[str, int | None] = {
    "headwater.v1.Project.signing_public_key": 16_384,  # a PEM
    "headwater.v1.Consumer.webhook_url": 2_048,
    # An application's page with its own query (connect sessions send the browser back to it).
    "headwater.v1.CreateConnectSessionRequest.redirect_url": 2_048,
    "headwater.v1.CreateConnectedUserSessionRequest.redirect_url": 2_048,
    "headwater.v1.EventEndpoint.url": 2_048,
    # What the proxy passes upstream as it came.
    "headwater.v1.ForwardRequest.path": None,
    "headwater.v1.ForwardRequest.query": None,
    "headwater.v1.ForwardRequest.link_base": None,
    "headwater.v1.Header.value": None,
}
NUL = "must not contain NUL characters (U+0000)"
_STRING = FieldDescriptor.TYPE_STRING


def string_problem(text: str, limit: int | None = MAX_STRING_CHARS) -> str | None:
    """What is wrong with a string headed for the store (None: nothing), for strings that are not
    message fields: a header's value, a token's claim."""
    if "\x00" in text:
        return NUL
    if limit is not None and len(text) > limit:
        return f"must be at most {limit} characters"
    return None


def request_violations(message: Message, path: str = "") -> list[tuple[str, str]]:
    """Every (field, description) pair the rules above find in `message`, whose own path is `path`."""
    violations: list[tuple[str, str]] = []
    _check_message(message, path, violations)
    return violations


def _check_message(message: Message, path: str, out: list) -> None:
    if isinstance(message, (struct_pb2.Struct, struct_pb2.ListValue)):
        _check_json(message, path, 1, out)
        return
    if isinstance(message, struct_pb2.Value):
        _check_value(message, path, 0, out)
        return
    for field, value in message.ListFields():
        if field.type == _STRING and not field.is_repeated:  # the common case, checked here directly
            problem = string_problem(value, STRING_LIMITS.get(field.full_name, MAX_STRING_CHARS))
            if problem:
                out.append((f"{path}.{field.name}" if path else field.name, problem))
            continue
        where = f"{path}.{field.name}" if path else field.name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field, value_field = field.message_type.fields
            for key, item in value.items():
                _check_scalar(key_field, key, where, out)
                _check_field_value(value_field, item, f"{where}[{key!r}]", out)
        elif field.is_repeated:
            for i, item in enumerate(value):
                _check_field_value(field, item, f"{where}[{i}]", out)
        else:
            _check_field_value(field, value, where, out)


def _check_field_value(field: FieldDescriptor, value: object, path: str, out: list) -> None:
    if field.message_type is not None:
        _check_message(value, path, out)
    else:
        _check_scalar(field, value, path, out)


def _check_scalar(field: FieldDescriptor, value: object, path: str, out: list) -> None:
    if field.type == FieldDescriptor.TYPE_STRING:
        problem = string_problem(value, STRING_LIMITS.get(field.full_name, MAX_STRING_CHARS))
        if problem:
            out.append((path, problem))


def _check_json(value: struct_pb2.Struct | struct_pb2.ListValue, path: str, depth: int, out: list) -> None:
    """A JSON object or array `depth` levels deep (a field's own Struct is level 1)."""
    if depth > MAX_JSON_DEPTH:
        out.append((path, f"nests deeper than {MAX_JSON_DEPTH} levels of JSON objects and arrays"))
        return
    if isinstance(value, struct_pb2.ListValue):
        for i, item in enumerate(value.values):
            _check_value(item, f"{path}[{i}]", depth, out)
        return
    for key, item in value.fields.items():
        if "\x00" in key:
            out.append((path, "a key " + NUL))
        else:
            _check_value(item, f"{path}.{key}", depth, out)


def _check_value(value: struct_pb2.Value, path: str, depth: int, out: list) -> None:
    kind = value.WhichOneof("kind")
    if kind == "number_value" and not math.isfinite(value.number_value):
        out.append((path, "must be a finite number (JSON has no NaN or Infinity)"))
    elif kind == "string_value" and "\x00" in value.string_value:
        out.append((path, NUL))
    elif kind == "struct_value":
        _check_json(value.struct_value, path, depth + 1, out)
    elif kind == "list_value":
        _check_json(value.list_value, path, depth + 1, out)
