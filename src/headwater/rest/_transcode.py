"""JSON <-> protobuf message, the way grpc-gateway transcodes (see DESIGN.md "One request, two fronts").

In:  `build_request` fills the request message from the body (per the rule's `body`), the query
     string (fields not bound by the path or the body) and the path variables (which win).
     JSON objects are walked field by field, so that an unknown or ill-typed field is reported
     with its full path (`credential.propertees`); each leaf value is parsed by protobuf's own
     `json_format.ParseDict`, which accepts the proto and the camelCase (json_name) spellings.
Out: `response_json` is `json_format.MessageToDict` with proto field names and every field
     present: unset fields with presence (messages, `optional` scalars) appear as null.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
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


def set_json_value(message: Message, field: FieldDescriptor, value: object, path: str) -> None:
    """Set one field from its JSON value with protobuf's parser; errors name `path`."""
    if is_repeated(field) and not is_map(field) and value is not None and not isinstance(value, list):
        raise invalid(path, "must be a JSON array")
    try:
        json_format.ParseDict({field.name: value}, message)
    except Exception:  # ParseError mostly; protobuf raises others (TypeError, ValueError) too
        raise invalid(path, _expected(field)) from None


def merge_object(obj: object, message: Message, path: str) -> None:
    """Merge a JSON object into `message`, rejecting unknown fields by their full path.

    `path` is where `obj` sits, e.g. "credential" for the body of CreateCredential; a typo inside
    it is reported as "credential.propertees".
    """
    if not isinstance(obj, dict):
        raise invalid(path or "body", "must be a JSON object")
    seen: dict[FieldDescriptor, str] = {}
    oneofs: dict[object, str] = {}
    for key, value in obj.items():
        field = field_by_key(message.DESCRIPTOR, key)
        where = f"{path}.{key}" if path else key
        if field is None:
            known = [f.name for f in message.DESCRIPTOR.fields]
            hint = difflib.get_close_matches(key, known, n=1)
            raise invalid(where, "unknown field" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
        where = f"{path}.{field.name}" if path else field.name
        if field in seen:
            raise invalid(where, f"given twice (as {seen[field]!r} and {key!r})")
        seen[field] = key
        oneof = field.containing_oneof
        if oneof is not None and value is not None:
            if oneof in oneofs:
                raise invalid(where, f"only one of the {oneof.name} fields may be given, got {oneofs[oneof]!r} too")
            oneofs[oneof] = key

        if value is not None and is_plain_message(field) and not is_repeated(field):
            child = getattr(message, field.name)
            child.SetInParent()
            merge_object(value, child, where)
        elif value is not None and is_plain_message(field):  # repeated messages
            if isinstance(value, dict):
                value = [value]  # one object is a list of one (Sequin's hosted API sends `filters` so)
            if not isinstance(value, list):
                raise invalid(where, "must be a JSON array")
            items = getattr(message, field.name)
            del items[:]
            for i, item in enumerate(value):
                merge_object(item, items.add(), f"{where}[{i}]")
        else:
            set_json_value(message, field, value, where)


_NOT_FROM_QUERY = {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue", "google.protobuf.Any"}
_WRAPPERS = {
    f"google.protobuf.{kind}Value"
    for kind in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
}


def _type_name(field: FieldDescriptor) -> str | None:
    return field.message_type.full_name if field.message_type is not None else None


def _query_value(field: FieldDescriptor, text: str, path: str) -> object:
    """A query-string value as the JSON value `json_format` expects for the field."""
    if field.type == _FD.TYPE_BOOL:
        if text.lower() in ("true", "1"):
            return True
        if text.lower() in ("false", "0"):
            return False
        raise invalid(path, _expected(field))
    if field.type == _FD.TYPE_ENUM and re.fullmatch(r"-?\d+", text):
        return int(text)
    if _type_name(field) in _WRAPPERS:  # Int32Value, BoolValue, ...: their value's form
        return _query_value(field.message_type.fields_by_name["value"], text, path)
    return text  # ints, floats, strings, bytes, enum names, Timestamp, Duration: their JSON text


def _split_field_mask(values: list[str]) -> list[str]:
    """`update_mask=name,rateLimit.allowedRequests` -> ["name", "rate_limit.allowed_requests"]."""
    paths = []
    for value in values:
        for path in filter(None, (p.strip() for p in value.split(","))):
            paths.append(re.sub(r"[A-Z]", lambda m: "_" + m.group().lower(), path))
    return paths


def merge_query(query_string: bytes, message: Message, skip: Sequence[str] = ()) -> set[str]:
    """Set fields from `?a=1&b.c=x&tags=x&tags=y`; params under a `skip` field path are ignored
    (they are bound by the path or the body). Returns the proto field paths that were set."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for key, value in parse_qsl(query_string.decode("utf-8", "replace"), keep_blank_values=True):
        grouped[key].append(value)
    done: set[str] = set()
    for key, values in grouped.items():
        fields = resolve_field_path(message.DESCRIPTOR, key)
        if fields is None:
            raise invalid(key, "unknown query parameter")
        proto_path = ".".join(f.name for f in fields)
        if any(proto_path == s or proto_path.startswith(s + ".") for s in skip):
            continue
        leaf = fields[-1]
        if is_plain_message(leaf) or is_map(leaf) or _type_name(leaf) in _NOT_FROM_QUERY:
            raise invalid(key, "cannot be set from the query string; set its fields, e.g. " + key + ".<field>")
        target = message
        for f in fields[:-1]:
            target = getattr(target, f.name)
        if _type_name(leaf) == "google.protobuf.FieldMask":
            getattr(target, leaf.name).paths[:] = _split_field_mask(values)
        elif is_repeated(leaf):
            set_json_value(target, leaf, [_query_value(leaf, v, key) for v in values], key)
        elif len(values) > 1:
            raise invalid(key, "given more than once")
        else:
            set_json_value(target, leaf, _query_value(leaf, values[0], key), key)
        done.add(proto_path)
    return done


def set_path_value(message: Message, dotted: str, text: str) -> None:
    """Set `sync.id` (a path variable) on the request; nested messages are created on the way."""
    fields = resolve_field_path(message.DESCRIPTOR, dotted)
    assert fields is not None  # checked when the route was built
    target = message
    for f in fields[:-1]:
        target = getattr(target, f.name)
    set_json_value(target, fields[-1], _query_value(fields[-1], text, dotted), dotted)


def check_path_field(descriptor: Descriptor, dotted: str) -> None:
    """At start-up: a path variable must name a singular scalar field (string, number, enum)."""
    fields = resolve_field_path(descriptor, dotted)
    if fields is None or is_repeated(fields[-1]) or fields[-1].message_type is not None:
        raise ValueError(f"path variable {dotted!r} names no singular scalar field of {descriptor.full_name}")


def parse_json_body(body: bytes) -> object:
    """The JSON value of a request body; an empty body is an empty object."""
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise invalid("body", f"is not valid JSON: {exc}") from None


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


def response_json(response: Message, response_body: str = "") -> object:
    """The JSON answer, honouring the rule's `response_body` (only that field is returned)."""
    if not response_body:
        return message_json(response)
    field = response.DESCRIPTOR.fields_by_name[response_body]
    if is_plain_message(field) and not is_repeated(field):
        return message_json(getattr(response, response_body))  # unset -> the empty object, all keys
    return message_json(response)[response_body]
