"""JSON <-> protobuf message, the way grpc-gateway transcodes (see DESIGN.md "One request, two fronts").

In:  `build_request` fills the request message from the body (per the rule's `body`), the query
     string (fields not bound by the path or the body) and the path variables (which win).
     JSON objects are walked field by field, so that an unknown or ill-typed field is reported
     with its full path (`credential.propertees`), every one of them (`violations` collects them
     for one answer); each leaf value is parsed by protobuf's own `json_format.ParseDict`, which
     accepts the proto and the camelCase (json_name) spellings. `parse_json_body` refuses what
     JSON cannot hold before any of that (deep nesting, NaN, lone surrogates).
Out: `response_json` is `json_format.MessageToDict` with proto field names and every field
     present: unset fields with presence (messages, `optional` scalars) appear as null. A servicer
     whose answer already is JSON (records, as the store keeps them) may return a `JsonAnswer`
     instead of the message: the bridge sends its JSON as it is, the gRPC front builds the message.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from headwater.errors import invalid

_FD = FieldDescriptor
_INTEGERS = {
    _FD.TYPE_INT32: "int32", _FD.TYPE_SINT32: "int32", _FD.TYPE_SFIXED32: "int32",
    _FD.TYPE_UINT32: "uint32", _FD.TYPE_FIXED32: "uint32",
    _FD.TYPE_INT64: "int64", _FD.TYPE_SINT64: "int64", _FD.TYPE_SFIXED64: "int64",
    _FD.TYPE_UINT64: "uint64", _FD.TYPE_FIXED64: "uint64",
}  # fmt: skip


# --- descriptor helpers ---------------------------------------------------------------------


def is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def is_well_known(descriptor: Descriptor) -> bool:
    """Struct, Value, Timestamp, Duration, FieldMask, wrappers, Any: JSON has its own forms for these."""
    return descriptor.full_name.startswith("google.protobuf.")


def is_plain_message(field: FieldDescriptor) -> bool:
    """A message field whose JSON is an object of its fields (so we walk into it)."""
    return field.message_type is not None and not is_map(field) and not is_well_known(field.message_type)


def is_repeated(field: FieldDescriptor) -> bool:
    return field.is_repeated


@functools.cache
def _fields_by_json_key(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    fields = {f.json_name: f for f in descriptor.fields}
    fields.update({f.name: f for f in descriptor.fields})
    return fields


def field_by_key(descriptor: Descriptor, key: str) -> FieldDescriptor | None:
    """The field a JSON key or query-parameter segment names: proto name or camelCase json_name."""
    return _fields_by_json_key(descriptor).get(key)


def resolve_field_path(descriptor: Descriptor, dotted: str) -> list[FieldDescriptor] | None:
    """`"sync.rate_limit"` -> [sync, rate_limit], through non-repeated plain message fields only."""
    fields: list[FieldDescriptor] = []
    for name in dotted.split("."):
        if fields:
            last = fields[-1]
            if not is_plain_message(last) or is_repeated(last):
                return None
            descriptor = last.message_type
        found = field_by_key(descriptor, name)
        if found is None:
            return None
        fields.append(found)
    return fields


# --- JSON in ---------------------------------------------------------------------------------


def _expected(field: FieldDescriptor) -> str:
    """What a valid value looks like, for error messages (never echo the value: it may be a secret)."""
    if field.type in _INTEGERS:
        return f"must be an integer ({_INTEGERS[field.type]})"
    if field.type in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
        return "must be a number"
    if field.type == _FD.TYPE_BOOL:
        return "must be true or false"
    if field.type == _FD.TYPE_STRING:
        return "must be a string"
    if field.type == _FD.TYPE_BYTES:
        return "must be base64 text"
    if field.type == _FD.TYPE_ENUM:
        return "must be one of " + ", ".join(v.name for v in field.enum_type.values)
    name = field.message_type.full_name
    if name == "google.protobuf.Timestamp":
        return 'must be an RFC 3339 timestamp, e.g. "2024-01-31T12:00:00Z"'
    if name == "google.protobuf.Duration":
        return 'must be a duration in seconds, e.g. "1.5s"'
    if name in ("google.protobuf.Struct",) or is_plain_message(field):
        return "must be a JSON object"
    return f"must be a valid {name}"


def set_json_value(message: Message, field: FieldDescriptor, value: object, path: str, violations: list) -> None:
    """Set one field from its JSON value with protobuf's parser; a mistake is added to
    `violations` as (path, description)."""
    if is_repeated(field) and not is_map(field) and value is not None and not isinstance(value, list):
        violations.append((path, "must be a JSON array"))
        return
    if _set_plainly(message, field, value):
        return
    try:
        json_format.ParseDict({field.name: value}, message)
    except Exception:  # ParseError mostly; protobuf raises others (TypeError, ValueError) too
        violations.append((path, _expected(field)))


# The JSON type that a string, integer or bool field takes as it is (protobuf's parser accepts
# more: "5" and 5.0 for an integer, which it is left to read).
_PLAIN_JSON_TYPE = {_FD.TYPE_STRING: str, _FD.TYPE_BOOL: bool, **{kind: int for kind in _INTEGERS}}


def _set_plainly(message: Message, field: FieldDescriptor, value: object) -> bool:
    """Sets a string, integer or bool field (or a repeated one) whose JSON value is exactly of its
    type, as `json_format.ParseDict` would set it but without its parser, which was most of the
    cost of a small request; False when the parser must read the value (another type, an integer
    out of range, a message, an enum)."""
    kind = _PLAIN_JSON_TYPE.get(field.type)
    if kind is None or field.message_type is not None:
        return False
    try:
        if is_repeated(field):
            if not all(type(item) is kind for item in value):
                return False
            items = getattr(message, field.name)
            del items[:]
            items.extend(value)
        elif type(value) is kind:
            setattr(message, field.name, value)
        else:
            return False
    except (TypeError, ValueError):  # out of range: the parser says why
        return False
    return True


def merge_object(obj: object, message: Message, path: str, violations: list) -> None:
    """Merge a JSON object into `message`, adding every mistake to `violations` (unknown fields by
    their full path, ill-typed values), so that one answer lists them all.

    `path` is where `obj` sits, e.g. "credential" for the body of CreateCredential; a typo inside
    it is reported as "credential.propertees".
    """
    if not isinstance(obj, dict):
        violations.append((path or "body", "must be a JSON object"))
        return
    seen: dict[FieldDescriptor, str] = {}
    oneofs: dict[object, str] = {}
    for key, value in obj.items():
        field = field_by_key(message.DESCRIPTOR, key)
        where = f"{path}.{key}" if path else key
        if field is None:
            known = [f.name for f in message.DESCRIPTOR.fields]
            hint = difflib.get_close_matches(key, known, n=1)
            violations.append((where, "unknown field" + (f" (did you mean {hint[0]!r}?)" if hint else "")))
            continue
        where = f"{path}.{field.name}" if path else field.name
        if field in seen:
            violations.append((where, f"given twice (as {seen[field]!r} and {key!r})"))
            continue
        seen[field] = key
        oneof = field.containing_oneof
        if oneof is not None and value is not None:
            if oneof in oneofs:
                violations.append(
                    (where, f"only one of the {oneof.name} fields may be given, got {oneofs[oneof]!r} too")
                )
                continue
            oneofs[oneof] = key

        if value is not None and is_plain_message(field) and not is_repeated(field):
            child = getattr(message, field.name)
            child.SetInParent()
            merge_object(value, child, where, violations)
        elif value is not None and is_plain_message(field):  # repeated messages
            if isinstance(value, dict):
                value = [value]  # one object is a list of one (Sequin's hosted API sends `filters` so)
            if not isinstance(value, list):
                violations.append((where, "must be a JSON array"))
                continue
            items = getattr(message, field.name)
            del items[:]
            for i, item in enumerate(value):
                merge_object(item, items.add(), f"{where}[{i}]", violations)
        else:
            set_json_value(message, field, value, where, violations)


_NOT_FROM_QUERY = {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue", "google.protobuf.Any"}
_WRAPPERS = {
    f"google.protobuf.{kind}Value"
    for kind in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
}


def _type_name(field: FieldDescriptor) -> str | None:
    return field.message_type.full_name if field.message_type is not None else None


def _query_value(field: FieldDescriptor, text: str) -> object:
    """A query-string value as the JSON value `json_format` expects for the field (protobuf's
    parser then refuses what is not of the field's type)."""
    if field.type == _FD.TYPE_BOOL:
        return {"true": True, "1": True, "false": False, "0": False}.get(text.lower(), text)
    if field.type == _FD.TYPE_ENUM and re.fullmatch(r"-?\d+", text):
        return int(text)
    if _type_name(field) in _WRAPPERS:  # Int32Value, BoolValue, ...: their value's form
        return _query_value(field.message_type.fields_by_name["value"], text)
    return text  # ints, floats, strings, bytes, enum names, Timestamp, Duration: their JSON text


def _split_field_mask(values: list[str]) -> list[str]:
    """`update_mask=name,rateLimit.allowedRequests` -> ["name", "rate_limit.allowed_requests"]."""
    paths = []
    for value in values:
        for path in filter(None, (p.strip() for p in value.split(","))):
            paths.append(re.sub(r"[A-Z]", lambda m: "_" + m.group().lower(), path))
    return paths


def merge_query(query_string: bytes, message: Message, skip: Sequence[str], violations: list) -> set[str]:
    """Set fields from `?a=1&b.c=x&tags=x&tags=y`; params under a `skip` field path are ignored
    (they are bound by the path or the body). Mistakes are added to `violations`. Returns the
    proto field paths that were set."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for key, value in parse_qsl(query_string.decode("utf-8", "replace"), keep_blank_values=True):
        grouped[key].append(value)
    done: set[str] = set()
    for key, values in grouped.items():
        fields = resolve_field_path(message.DESCRIPTOR, key)
        if fields is None:
            violations.append((key, "unknown query parameter"))
            continue
        proto_path = ".".join(f.name for f in fields)
        if any(proto_path == s or proto_path.startswith(s + ".") for s in skip):
            continue
        leaf = fields[-1]
        if is_plain_message(leaf) or is_map(leaf) or _type_name(leaf) in _NOT_FROM_QUERY:
            violations.append((key, f"cannot be set from the query string; set its fields, e.g. {key}.<field>"))
            continue
        target = message
        for f in fields[:-1]:
            target = getattr(target, f.name)
        if _type_name(leaf) == "google.protobuf.FieldMask":
            getattr(target, leaf.name).paths[:] = _split_field_mask(values)
        elif is_repeated(leaf):
            set_json_value(target, leaf, [_query_value(leaf, v) for v in values], key, violations)
        elif len(values) > 1:
            violations.append((key, "given more than once"))
            continue
        else:
            set_json_value(target, leaf, _query_value(leaf, values[0]), key, violations)
        done.add(proto_path)
    return done


def set_path_value(message: Message, dotted: str, text: str, violations: list) -> None:
    """Set `sync.id` (a path variable) on the request; nested messages are created on the way."""
    fields = resolve_field_path(message.DESCRIPTOR, dotted)
    assert fields is not None  # checked when the route was built
    target = message
    for f in fields[:-1]:
        target = getattr(target, f.name)
    set_json_value(target, fields[-1], _query_value(fields[-1], text), dotted, violations)


def check_path_field(descriptor: Descriptor, dotted: str) -> None:
    """At start-up: a path variable must name a singular scalar field (string, number, enum)."""
    fields = resolve_field_path(descriptor, dotted)
    if fields is None or is_repeated(fields[-1]) or fields[-1].message_type is not None:
        raise ValueError(f"path variable {dotted!r} names no singular scalar field of {descriptor.full_name}")


MAX_BODY_DEPTH = 32  # JSON objects and arrays in a body; the deepest message and Struct we take fit


def parse_json_body(body: bytes) -> object:
    """The JSON value of a request body; an empty body is an empty object.

    Refused (400, field "body"), besides text that is not JSON: NaN, Infinity and numbers too large
    for a double (JSON has none of them), integers longer than Python converts, lone surrogates
    (`"\\ud800"`: no Unicode text), and nesting deeper than MAX_BODY_DEPTH, which json.loads would
    otherwise meet as a RecursionError.
    """
    if not body.strip():
        return {}
    try:
        value = json.loads(body, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise invalid("body", f"nests deeper than {MAX_BODY_DEPTH} levels of JSON objects and arrays") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, and our own refusals below
        raise invalid("body", f"is not valid JSON: {exc}") from None
    problem = _json_problem(value)
    if problem:
        raise invalid("body", problem)
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text[:40]} is too large for a double")
    return number


def _json_problem(value: object) -> str | None:
    """Too deep, or holding a lone surrogate (in a key or a string): walked without recursion."""
    pending = [(value, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return "is not valid JSON: it holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is no Unicode text"
            continue
        if not isinstance(value, (dict, list)):
            continue
        if depth > MAX_BODY_DEPTH:
            return f"nests deeper than {MAX_BODY_DEPTH} levels of JSON objects and arrays"
        items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
        pending.extend((item, depth + 1) for item in items)
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")


def update_mask_paths(obj: Mapping, descriptor: Descriptor, prefix: str = "") -> list[str]:
    """The update mask a PATCH body implies, as grpc-gateway computes it (FieldMaskFromRequestBody):
    the proto-name paths of the keys present, descending into nested message objects but not into
    Struct, map or repeated fields. `obj` has already been validated by `merge_object`.

        {"name": "x", "rateLimit": {"allowed_requests": 5}, "metadata": {"a": 1}}
        -> ["metadata", "name", "rate_limit.allowed_requests"]
    """
    paths = []
    for key, value in obj.items():
        field = field_by_key(descriptor, key)
        path = prefix + field.name
        if is_plain_message(field) and not is_repeated(field) and isinstance(value, dict) and value:
            paths.extend(update_mask_paths(value, field.message_type, path + "."))
        else:
            paths.append(path)
    return sorted(paths)


# --- JSON out --------------------------------------------------------------------------------


STRUCT_TYPES = ("google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue")

# Headwater's additions to a documented object that appear only when used, so that the documented
# answer stays verbatim otherwise: a rate limit's further windows.
OMITTED_WHEN_EMPTY = frozenset({"headwater.v1.RateLimit.windows"})


def integral_numbers(value: object) -> object:
    """Struct numbers are doubles; show 42.0 as 42, as the caller sent it (exact below 2**53)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: integral_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [integral_numbers(v) for v in value]
    return value


def _document(message: Message, out: dict) -> dict:
    """`out` in the message's field order, with unset fields that have presence as None,
    through nested, repeated and map-valued plain messages."""
    ordered = {}
    for field in message.DESCRIPTOR.fields:
        if field.name not in out:
            if field.has_presence and not is_repeated(field):
                ordered[field.name] = None
            continue
        value = out[field.name]
        if not value and field.full_name in OMITTED_WHEN_EMPTY:
            continue
        if is_map(field):
            value_field = field.message_type.fields_by_name["value"]
            if is_plain_message(value_field):
                items = getattr(message, field.name)
                value = {
                    json_key: _document(items[key], value[json_key])
                    for key in items
                    for json_key in [("true" if key else "false") if isinstance(key, bool) else str(key)]
                }
        elif is_plain_message(field):
            if is_repeated(field):
                value = [_document(m, o) for m, o in zip(getattr(message, field.name), value)]
            else:
                value = _document(getattr(message, field.name), value)
        elif field.message_type is not None and field.message_type.full_name in STRUCT_TYPES:
            value = integral_numbers(value)
        ordered[field.name] = value
    return ordered


def message_json(message: Message) -> dict:
    """The documented JSON object of a message: proto names, every key present, in field order."""
    out = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return _document(message, out)


@dataclass(frozen=True)
class JsonAnswer:
    """A unary method's answer as its documented JSON object, and how to build it as the message.

    For answers whose data is JSON already (records as the store keeps them, a batch of 100 of
    them for a consumer): the REST bridge sends `json` as it is, where building the message and
    turning it back into JSON (`message_json`) was most of a batch's CPU; the gRPC front calls
    `message()` at its edge (headwater.server.ApiErrorInterceptor). The two must say the same:
    `message_json(answer.message()) == answer.json`, which the tests of each answer check.

        return JsonAnswer({"records": documents}, lambda: RunMutationResponse(records=[...]))
    """

    json: dict
    message: Callable[[], Message]


def response_json(response: Message | JsonAnswer, response_body: str = "") -> object:
    """The JSON answer, honouring the rule's `response_body` (only that field is returned)."""
    if isinstance(response, JsonAnswer):
        return response.json[response_body] if response_body else response.json
    if not response_body:
        return message_json(response)
    field = response.DESCRIPTOR.fields_by_name[response_body]
    if is_plain_message(field) and not is_repeated(field):
        return message_json(getattr(response, response_body))  # unset -> the empty object, all keys
    return message_json(response)[response_body]
