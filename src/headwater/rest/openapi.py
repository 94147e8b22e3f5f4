"""The OpenAPI 3.1 document of the REST bridge, written from its route table.

The bridge builds its routes from the services' `google.api.http` rules at start-up; this module
walks that same table (`RestBridge.routes`), so the document cannot disagree with what is served:

    doc = document(bridge.routes)        # a dict; `render(doc)` is its bytes, as served and committed

It is served at `GET /openapi.json` (no token: `build_app` adds the route) and written into the
repository by `make gen` (`python -m headwater.rest gen/openapi.json`, which starts a server
on loopback and saves what it serves). What it says, and where it comes from:

- Paths: each route's template, `{var}` and `{path=**}` as path parameters (a `**` one may hold
  "/"), the `:verb` suffix kept. A body per the rule's `body`: "*" is the request message without
  its path fields, a field name is that field; fields bound by neither are query parameters
  (`?health.status=error`: a nested message's fields by their dotted path), as the bridge reads them.
- Bodies in the JSON the bridge writes: proto (snake_case) field names; protobuf's JSON mapping
  for the well-known types (Timestamp: a date-time string, Duration: "1.5s", Struct: an object,
  Value: anything, FieldMask: "a,b.c", wrappers: their value); 64-bit integers as strings; enums
  by name. A response has every key: a field with presence (a message, an `optional` scalar)
  unset is null. Requests: `google.api.field_behavior` REQUIRED fields are required, OUTPUT_ONLY
  ones are read-only; a PATCH body (the update mask is its keys) requires nothing; null is
  "unset" for a field not required; strings sent are at most `headwater.inputs`' limits long.
  Not documented, though the bridge accepts them: camelCase spellings of field names, and one
  object where a list of messages is expected (a list of one).
- Errors: the documented body (`Error`) for the statuses grpc-gateway maps our status codes to.
- Security: an API token, `Authorization: Bearer T` (or `token T`); `/openapi.json` and the routes
  whose `RawDoc` says so need none.
- Raw routes (the proxy): any verb, any body, any answer: documented as pass-through, per verb.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from google.api import field_behavior_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from headwater.inputs import MAX_STRING_CHARS, STRING_LIMITS

from . import _transcode as tc
from ._routing import ANY_METHOD, PathTemplate, Route, RouteTable

OPENAPI_PATH = "/openapi.json"
VERSION = "0.1.0"

_FD = FieldDescriptor
_INT32 = {_FD.TYPE_INT32, _FD.TYPE_SINT32, _FD.TYPE_SFIXED32}
_UINT32 = {_FD.TYPE_UINT32, _FD.TYPE_FIXED32}
_INT64 = {_FD.TYPE_INT64, _FD.TYPE_SINT64, _FD.TYPE_SFIXED64}
_UINT64 = {_FD.TYPE_UINT64, _FD.TYPE_FIXED64}

# What a raw route answers on each verb when it passes everything through (the proxy).
RAW_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")

# The error statuses any RPC route may answer (grpc-gateway's mapping of our status codes,
# headwater.errors.HTTP_STATUS), and the ones only a route reading a body answers.
_ERRORS = {
    "400": "INVALID_ARGUMENT, FAILED_PRECONDITION or OUT_OF_RANGE: the request is wrong; `details` names the fields",
    "401": "UNAUTHENTICATED: no valid API token",
    "403": "PERMISSION_DENIED",
    "404": "NOT_FOUND: no such resource in the caller's organisation, or no such path",
    "409": "ALREADY_EXISTS or ABORTED",
    "429": "RESOURCE_EXHAUSTED: a limit was reached; Retry-After says when to try again",
    "503": "UNAVAILABLE: try again shortly (Retry-After)",
    "504": "DEADLINE_EXCEEDED: the call's deadline (grpc-timeout or x-headwater-timeout header) passed",
}
_BODY_ERRORS = {
    "413": "the request body is larger than the server accepts",
    "415": "the body is not JSON, or its Content-Encoding is not gzip, deflate or identity",
}


@dataclass(frozen=True)
class RawDoc:
    """How the document describes a raw route (set with `describe`); a raw route without one is
    a pass-through: any body, any answer, an API token required."""

    summary: str
    tag: str = "Raw routes"
    authenticated: bool = True
    media_type: str = "*/*"  # of the answer, e.g. "text/html"


def describe(handler, doc: RawDoc):
    """`handler` (a raw route's), marked with how the document shows it."""
    handler.openapi = doc
    return handler


_PASS_THROUGH = RawDoc(
    "Raw pass-through: the request (verb, path, query, headers, body) goes upstream as it came, "
    "and the upstream's answer (status, headers, body) comes back as it was.",
)


class OpenApiRoute:
    """The handler of `GET /openapi.json`: the document of the table it is part of, rendered once."""

    openapi = RawDoc("This document.", tag="Meta", authenticated=False, media_type="application/json")

    def __init__(self, routes: RouteTable):
        self.routes = routes
        self._body: bytes | None = None

    def body(self) -> bytes:
        if self._body is None:
            self._body = render(document(self.routes))
        return self._body

    async def __call__(self, http):
        from ._app import RawResponse  # the bridge imports this module

        return RawResponse(200, [("content-type", "application/json")], self.body())


def render(doc: dict) -> bytes:
    """The document's bytes: sorted keys, two-space indents, a final newline (stable in git)."""
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def document(routes: RouteTable) -> dict:
    """The OpenAPI 3.1 document of every route in `routes`."""
    builder = _Builder()
    paths: dict[str, dict] = {}
    for route in routes:
        path = _openapi_path(route.template)
        for verb, operation in builder.operations(route):
            paths.setdefault(path, {})[verb] = operation
    _link_creates(paths, builder.schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Headwater",
            "version": VERSION,
            "description": (
                "The REST paths of Headwater, generated from the protos' google.api.http rules "
                "(the same route table the server's REST bridge serves). Field names are the "
                "proto names (snake_case). Errors answer the `Error` body."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": builder.schemas,
            "responses": {f"Error{status}": _error_response(why) for status, why in {**_ERRORS, **_BODY_ERRORS}.items()},
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": (
                        "An API token of the organisation (`headwater tokens issue`): "
                        "`Authorization: Bearer <token>`; `Authorization: token <token>` is accepted too. "
                        "The connected-user routes (/projects/...) take the user's JWT the same way."
                    ),
                },
            },
        },
        "security": [{"bearer": []}],
        "tags": [{"name": name} for name in sorted(builder.tags)],
    }


def _link_creates(paths: dict[str, dict], schemas: dict[str, dict]) -> None:
    """OpenAPI links from each create to what it creates: `POST /v1/syncs` answering an object
    with an `id` links to every operation under `/v1/syncs/{id}` (`{x}` of the next segment is
    `$response.body#/id`), so that clients (and schemathesis' stateful tests) can follow them."""
    prefix = "#/components/schemas/"
    for path, operations in paths.items():
        create = operations.get("post")
        ok = (create or {}).get("responses", {}).get("200", {})
        ref = ok.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
        if not ref.startswith(prefix) or "id" not in schemas[ref[len(prefix):]].get("properties", {}):
            continue
        links = {}
        for other, their_operations in sorted(paths.items()):
            match = re.match(re.escape(path) + r"/\{([^}]+)\}", other)
            if not match:
                continue
            for verb, operation in sorted(their_operations.items()):
                links[operation["operationId"]] = {
                    "operationId": operation["operationId"],
                    "parameters": {match.group(1): "$response.body#/id"},
                }
        if links:
            ok["links"] = links


def _openapi_path(template: PathTemplate) -> str:
    """`/v1/{name=projects/*}/syncs/{id}:run` -> `/v1/{name}/syncs/{id}:run`."""
    return re.sub(r"\{([^}=]+)(=[^}]*)?\}", r"{\1}", template.template)


def _behaviors(field: FieldDescriptor) -> set[int]:
    return set(field.GetOptions().Extensions[field_behavior_pb2.field_behavior])


def is_required(field: FieldDescriptor) -> bool:
    return field_behavior_pb2.REQUIRED in _behaviors(field)


def _nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


class _Builder:
    """Walks the routes, collecting the message schemas they reach in three forms: as answered
    ("out": every key present), as sent ("in": REQUIRED fields required) and as a PATCH body
    ("patch": nothing required)."""

    _SUFFIX = {"out": "", "in": "Input", "patch": "Patch"}

    def __init__(self):
        self.schemas: dict[str, dict] = {"Error": _ERROR_SCHEMA}
        self.tags: set[str] = set()
        self._operation_ids: set[str] = set()

    # --- operations ----------------------------------------------------------------------------

    def operations(self, route: Route):
        endpoint = route.endpoint
        doc = getattr(endpoint, "openapi", None)
        method = getattr(endpoint, "method", None)
        if doc is None and method is not None and hasattr(method, "input_type"):
            yield from self._rpc(route, endpoint)
        else:
            yield from self._raw(route, doc or _PASS_THROUGH)

    def _unique_id(self, base: str) -> str:
        candidate, n = base, 1
        while candidate in self._operation_ids:
            n += 1
            candidate = f"{base}_{n}"
        self._operation_ids.add(candidate)
        return candidate

    def _rpc(self, route: Route, handler):
        method = handler.method
        request = method.input_type
        verb = next(iter(route.methods)).lower()
        tag = method.containing_service.name
        self.tags.add(tag)
        path_names = [v.name for v in route.template.variables]
        operation: dict = {
            "operationId": self._unique_id(f"{tag}_{method.name}"),
            "summary": method.full_name,
            "tags": [tag],
            "parameters": [self._path_parameter(request, v) for v in route.template.variables],
        }
        if handler.body != "*":
            skip = [*handler.path_fields, *([handler.body] if handler.body else [])]
            operation["parameters"].extend(self._query_parameters(request, "", skip, set()))
        if handler.body:
            variant = "patch" if handler.fill_update_mask else "in"
            if handler.body == "*":
                # The path's fields win over the body's: they are not part of it.
                schema = self._message_schema(request, "in", exclude={p for p in path_names if "." not in p})
            else:
                schema = self._body_schema(request.fields_by_name[handler.body], variant)
            operation["requestBody"] = {
                "required": False,  # an empty body is an empty message
                "content": {"application/json": {"schema": schema}},
            }
        if not operation["parameters"]:
            del operation["parameters"]
        response = method.output_type
        if handler.response_body:
            answer = self._body_schema(response.fields_by_name[handler.response_body], "out")
        else:
            answer = self._ref(response, "out")
        responses = {"200": {"description": "OK", "content": {"application/json": {"schema": answer}}}}
        for status in [*_ERRORS, *(_BODY_ERRORS if handler.body else ())]:
            responses[status] = {"$ref": f"#/components/responses/Error{status}"}
        operation["responses"] = responses
        yield verb, operation

    def _raw(self, route: Route, doc: RawDoc):
        self.tags.add(doc.tag)
        methods = RAW_METHODS if ANY_METHOD in route.methods else sorted(m.lower() for m in route.methods)
        slug = re.sub(r"[^A-Za-z0-9]+", "_", route.template.template).strip("_")
        for verb in methods:
            parameters = []
            for var in route.template.variables:
                schema = {"type": "string"}
                description = None
                if var.end is None or var.end - var.start > 1:
                    description = "may hold several segments, joined by /"
                else:
                    schema["minLength"] = 1
                parameter = {"name": var.name, "in": "path", "required": True, "schema": schema}
                if description:
                    parameter["description"] = description
                parameters.append(parameter)
            operation: dict = {
                "operationId": self._unique_id(f"{verb}_{slug}"),
                "summary": doc.summary,
                "tags": [doc.tag],
                "responses": {"default": {
                    "description": "the route's answer" if doc.media_type != "*/*" else
                    "the upstream's answer, as it was (status, headers, body); or an `Error` of Headwater's own",
                    "content": {doc.media_type: {"schema": {}}},
                }},
            }
            if parameters:
                operation["parameters"] = parameters
            if not doc.authenticated:
                operation["security"] = []
            if verb in ("put", "post", "patch", "delete") and doc.media_type == "*/*":
                operation["requestBody"] = {"required": False, "content": {"*/*": {"schema": {}}}}
            yield verb, operation

    def _path_parameter(self, request: Descriptor, var) -> dict:
        fields = tc.resolve_field_path(request, var.name)
        schema = self._scalar_schema(fields[-1], "in")
        parameter = {"name": var.name, "in": "path", "required": True, "schema": schema}
        multi = var.end is None or var.end - var.start > 1
        if multi:
            parameter["description"] = "may hold several segments, joined by /"
        elif schema.get("type") == "string":
            schema["minLength"] = 1
        return parameter

    def _query_parameters(self, message: Descriptor, prefix: str, skip: list[str], seen: set[str]):
        """The fields a query string may set: scalars, repeated scalars, and the fields of
        (non-repeated) nested messages by their dotted path; never maps, Struct or Any."""
        if message.full_name in seen:  # a message holding itself: its fields once
            return
        seen = seen | {message.full_name}
        for field in message.fields:
            path = prefix + field.name
            if any(path == s or path.startswith(s + ".") for s in skip):
                continue
            if tc.is_map(field):
                continue
            if tc.is_plain_message(field):
                if not tc.is_repeated(field):
                    yield from self._query_parameters(field.message_type, path + ".", skip, seen)
                continue
            type_name = field.message_type.full_name if field.message_type else None
            if type_name in tc._NOT_FROM_QUERY:
                continue
            schema = self._scalar_schema(field, "in")
            if tc.is_repeated(field):
                schema = {"type": "array", "items": schema}
            parameter = {"name": path, "in": "query", "schema": schema}
            if is_required(field) and not prefix:
                parameter["required"] = True
            if type_name == "google.protobuf.FieldMask":
                parameter["description"] = "field paths, comma-separated"
            yield parameter

    # --- schemas -------------------------------------------------------------------------------

    def _ref(self, message: Descriptor, variant: str) -> dict:
        name = message.full_name + self._SUFFIX[variant]
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder: a message may refer to itself
            self.schemas[name] = self._message_schema(message, variant)
        return {"$ref": f"#/components/schemas/{name}"}

    def _message_schema(self, message: Descriptor, variant: str, exclude: set[str] = frozenset()) -> dict:
        properties, required = {}, []
        for field in message.fields:
            if field.name in exclude:
                continue
            schema = self._field_schema(field, variant)
            behaviors = _behaviors(field)
            if variant == "out" and field.full_name not in tc.OMITTED_WHEN_EMPTY:
                required.append(field.name)  # the bridge writes every key (but those it omits when empty)
            elif variant == "in" and field_behavior_pb2.REQUIRED in behaviors:
                required.append(field.name)
            if field_behavior_pb2.OUTPUT_ONLY in behaviors and variant != "out":
                schema = {**schema, "readOnly": True} if "$ref" not in schema else {"allOf": [schema], "readOnly": True}
            properties[field.name] = schema
        schema = {"type": "object", "properties": properties, "additionalProperties": False}
        if required:
            schema["required"] = required
        return schema

    def _body_schema(self, field: FieldDescriptor, variant: str) -> dict:
        """A field as a whole body (the rule's `body` or `response_body`): never null."""
        if tc.is_map(field):
            value_field = field.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self._single_schema(value_field, variant)}
        single = self._single_schema(field, variant)
        return {"type": "array", "items": single} if tc.is_repeated(field) else single

    def _field_schema(self, field: FieldDescriptor, variant: str) -> dict:
        """A field's JSON value inside an object. Answers write null for an unset field that has
        presence (a message, an `optional` scalar); requests may send null for any field that is
        not required, which the bridge takes as "unset" (protobuf's JSON parser does)."""
        schema = self._body_schema(field, variant)
        if variant == "out":
            nullable = field.has_presence and not tc.is_repeated(field)
        else:
            nullable = variant == "patch" or not is_required(field)
        return _nullable(schema) if nullable else schema

    def _single_schema(self, field: FieldDescriptor, variant: str) -> dict:
        if field.message_type is not None:
            if tc.is_well_known(field.message_type):
                return _well_known(field.message_type, variant)
            return self._ref(field.message_type, variant)
        return self._scalar_schema(field, variant)

    def _scalar_schema(self, field: FieldDescriptor, variant: str) -> dict:
        kind = field.type
        if field.message_type is not None:  # a wrapper or Timestamp in a path or query parameter
            return _well_known(field.message_type, variant)
        if kind == _FD.TYPE_STRING:
            limit = STRING_LIMITS.get(field.full_name, MAX_STRING_CHARS)  # checked on the way in
            return {"type": "string", "maxLength": limit} if variant != "out" and limit else {"type": "string"}
        if kind == _FD.TYPE_BOOL:
            return {"type": "boolean"}
        if kind in _INT32:
            return {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
        if kind in _UINT32:
            return {"type": "integer", "format": "uint32", "minimum": 0, "maximum": 2**32 - 1}
        if kind in _INT64 or kind in _UINT64:
            fmt = "int64" if kind in _INT64 else "uint64"
            text = {"type": "string", "format": fmt, "pattern": "^-?[0-9]+$" if fmt == "int64" else "^[0-9]+$"}
            if variant == "out":
                return text  # protobuf's JSON writes 64-bit integers as strings
            return {"oneOf": [text, {"type": "integer", "format": fmt}]}
        if kind in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
            number = {"type": "number", "format": "double" if kind == _FD.TYPE_DOUBLE else "float"}
            if variant == "out":
                return {"anyOf": [number, {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}]}
            return number
        if kind == _FD.TYPE_BYTES:
            return {"type": "string", "contentEncoding": "base64"}
        if kind == _FD.TYPE_ENUM:
            names = [v.name for v in field.enum_type.values]
            if variant == "out":
                return {"type": "string", "enum": names}
            return {"anyOf": [{"type": "string", "enum": names}, {"type": "integer", "format": "int32"}]}
        raise ValueError(f"{field.full_name}: no JSON schema for field type {kind}")


_WRAPPER_TYPES = {
    "DoubleValue": _FD.TYPE_DOUBLE, "FloatValue": _FD.TYPE_FLOAT, "Int64Value": _FD.TYPE_INT64,
    "UInt64Value": _FD.TYPE_UINT64, "Int32Value": _FD.TYPE_INT32, "UInt32Value": _FD.TYPE_UINT32,
    "BoolValue": _FD.TYPE_BOOL, "StringValue": _FD.TYPE_STRING, "BytesValue": _FD.TYPE_BYTES,
}  # fmt: skip


def _well_known(message: Descriptor, variant: str) -> dict:
    """protobuf's JSON mapping of the google.protobuf types."""
    name = message.full_name.removeprefix("google.protobuf.")
    if name == "Timestamp":
        return {"type": "string", "format": "date-time"}
    if name == "Duration":
        return {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$", "examples": ["1.5s"]}
    if name == "Struct":
        return {"type": "object"}
    if name == "Value":
        return {}
    if name == "ListValue":
        return {"type": "array"}
    if name == "FieldMask":
        return {"type": "string", "description": "field paths, comma-separated"}
    if name == "Empty":
        return {"type": "object", "additionalProperties": False}
    if name == "Any":
        return {"type": "object", "properties": {"@type": {"type": "string"}}, "required": ["@type"]}
    if name in _WRAPPER_TYPES:
        return _Builder()._scalar_schema(message.fields_by_name["value"], variant)
    raise ValueError(f"no JSON schema for {message.full_name}")


_ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error Headwater answers itself (a proxied upstream's errors pass through as they were).",
    "properties": {
        "error": {"type": "string", "description": '"Error: " and the message'},
        "docs": {"type": "array", "items": {"type": "string", "format": "uri"}},
        "code": {"type": "integer", "description": "the gRPC status code, e.g. 3 (INVALID_ARGUMENT)"},
        "message": {"type": "string"},
        "details": {
            "type": "array",
            "description": "google.rpc details, e.g. a BadRequest naming each wrong field",
            "items": {"type": "object", "properties": {"@type": {"type": "string"}}, "required": ["@type"]},
        },
    },
    "required": ["error", "docs", "code", "message", "details"],
    "additionalProperties": False,
}


def _error_response(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


async def generate(path: str) -> None:
    """Start a server on loopback (a scratch SQLite database, no sync engine) and save the
    document it serves: the route table of the real server, whatever services it has."""
    import tempfile

    import httpx
    from cryptography.fernet import Fernet

    from headwater.server import Server
    from headwater.settings import Settings

    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(database_url=f"sqlite:///{scratch}/gen.db", secret_key=Fernet.generate_key(),
                            grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", sync_engine=False)
        server = await Server.start(settings)
        try:
            async with httpx.AsyncClient() as client:
                answer = await client.get(f"http://127.0.0.1:{server.http_port}{OPENAPI_PATH}")
                answer.raise_for_status()
        finally:
            await server.stop(grace=1)
    with open(path, "wb") as out:
        out.write(answer.content)

