"""Fuzzing every route (hypothesis): no input makes the server answer 5xx over REST, or INTERNAL or
UNKNOWN over gRPC, and a refused call writes nothing.

Requests come from the route table the server serves (the RPC routes of the `google.api.http`
annotations and the proxy's raw routes) and from each method's request descriptor: valid-ish
values (the ids of a seeded stream, sync, credential, consumer, project and OAuth app; words the servicers
know) mixed with hostile ones (NUL, strings around and far past the length limit, lone surrogates,
NaN and Infinity, deep nesting, wrong types, unknown fields, garbage bytes, other content types
and encodings, no token). Over gRPC the messages are built from the descriptors, and raw bytes
(garbage, or a message cut short or changed) go to every method.

Each test sends HEADWATER_FUZZ_EXAMPLES requests: by default the same 40 every time (a few seconds
on each database, repeatable in CI); `make fuzz` draws thousands of new ones. Hypothesis runs in a worker thread, with blocking calls into the
test's event loop, where the server runs.

Proxied calls reach a fake Stripe on loopback only: absolute URLs are generated for its address,
or broken ones (a bad port, a foreign host) that must be refused before any connection.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import re
import zlib
from urllib.parse import quote, urlencode

import grpc
import httpx
import pytest
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.rpc import status_pb2
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from headwater.rest import build_app
from headwater.services import raw_routes, servicers
from headwater.v1 import mutation_pb2
from test_connected_users import key_pair
from test_hostile_input import table_rows

LONG_RUN = "HEADWATER_FUZZ_EXAMPLES" in os.environ  # make fuzz
EXAMPLES = int(os.environ.get("HEADWATER_FUZZ_EXAMPLES", "40"))
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=not LONG_RUN,  # the short run sends the same requests every time, so CI is repeatable
    deadline=None,  # a call to a real server on a busy machine takes what it takes
    database=None,  # nothing written into the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
CALL_TIMEOUT = 2.0  # seconds: each call's deadline (a long-poll answers empty before it)
_FD = FieldDescriptor
_INT_RANGES = {
    _FD.TYPE_INT32: (-(2**31), 2**31 - 1), _FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1), _FD.TYPE_UINT32: (0, 2**32 - 1), _FD.TYPE_FIXED32: (0, 2**32 - 1),
    _FD.TYPE_INT64: (-(2**63), 2**63 - 1), _FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1), _FD.TYPE_UINT64: (0, 2**64 - 1), _FD.TYPE_FIXED64: (0, 2**64 - 1),
}  # fmt: skip
# Words the servicers know, so that generated requests also get past the first checks.
WORDS = [
    "", "stripe", "stripe:customer", "stripe:invoice", "github", "salesforce", "custom", "create", "update",
    "delete", "all", "new", "last", "active", "disabled", "continuous", "4h", "healthy", "stripe_api_key",
    "kind", "secret", "name", "GET", "POST", "http://127.0.0.1:9/hook", "headwater:stripe", "ca_fuzz", "client_id",
]
BAD_STRINGS = ["\x00", "a\x00b", "x" * 255, "x" * 256, "x" * 5000, "é" * 300, "%00", "../..", "\\u0000"]


# --- the server, seeded ------------------------------------------------------------------------


@pytest.fixture
async def fuzzed(server, client, fake_provider):
    """The running server, a client of it, the ids worth guessing, and the fake Stripe's address."""
    stripe = await fake_provider("stripe")
    stripe.seed("customers", n=2)
    stream = (await client.rest.post("/v1/streams", json={"name": "fuzz"})).json()
    sync = (await client.rest.post("/v1/syncs", json={
        "provider": "stripe", "stream_id": stream["id"], "collection_ids": ["stripe:customer"],
        "credential": {"properties": {"kind": "stripe_api_key", "secret": stripe.token, "base_url": stripe.base_url}},
    })).json()
    consumer = (await client.rest.post("/v1/http-consumers", json={"filters": [{"sync_id": sync["id"]}]})).json()
    project = (await client.rest.post("/v1/projects", json={"name": "fuzz", "signing_public_key": key_pair()[1]})).json()
    app = (await client.rest.post("/v1/oauth-apps", json={
        "provider": "stripe", "client_id": "ca_fuzz", "client_secret": "sk_fuzz",
    })).json()
    ids = [stream["id"], sync["id"], sync["credential_id"], consumer["id"], project["id"], app["id"],
           *stripe.objects("customers")]
    return server, client, ids, stripe.base_url


def blocking(loop: asyncio.AbstractEventLoop):
    """Runs a coroutine on the server's loop from hypothesis's thread, and waits for it."""
    return lambda coro: asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)


def refused_writes(before: dict, after: dict, described: str) -> None:
    assert after == before, f"a refused call wrote rows: {described}\n{before}\n{after}"


# --- values, from the descriptors ------------------------------------------------------------


def strings(ids: list[str], surrogates: bool) -> st.SearchStrategy[str]:
    choices = [
        st.sampled_from(ids + WORDS),
        st.sampled_from(BAD_STRINGS),
        st.text(max_size=12),
        st.text(max_size=6).map(lambda t: f"{t}\x00{t}"),
    ]
    if surrogates:  # JSON can spell them ("\ud800"); protobuf strings cannot hold them
        choices.append(st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=2))
    return st.one_of(choices)


def nested(levels: int, leaf: object = 1) -> object:
    value = leaf
    for i in range(levels):
        value = {"a": value} if i % 2 else [value]
    return value


def json_values(text: st.SearchStrategy[str]) -> st.SearchStrategy[object]:
    """Any JSON value, NaN and Infinity included, and now and then one nested past every limit."""
    scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | text
    return st.one_of(
        st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                     max_leaves=8),
        st.integers(15, 40).map(nested),
    )


def field_value(field: FieldDescriptor, ids: list[str], typed: bool, depth: int) -> st.SearchStrategy[object]:
    """A JSON value for `field`: of its type, or (unless `typed`, for gRPC) of any type."""
    text = strings(ids, surrogates=not typed)
    single = _single_value(field, ids, typed, depth, text)
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value_field = field.message_type.fields_by_name["value"]
        single = st.dictionaries(text, _single_value(value_field, ids, typed, depth, text), max_size=3)
    elif field.is_repeated:
        single = st.lists(single, max_size=4)
    return single if typed else st.one_of(single, json_values(text))


def _single_value(field, ids, typed, depth, text) -> st.SearchStrategy[object]:
    if field.type in _INT_RANGES:
        low, high = _INT_RANGES[field.type]
        return st.integers(-5, 2000) | st.integers(low, high) if typed else st.integers(-(2**70), 2**70)
    if field.type in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
        return st.floats(width=32 if field.type == _FD.TYPE_FLOAT else 64)
    if field.type == _FD.TYPE_BOOL:
        return st.booleans()
    if field.type == _FD.TYPE_BYTES:
        return st.binary(max_size=32).map(lambda b: base64.b64encode(b).decode())
    if field.type == _FD.TYPE_ENUM:
        return st.sampled_from([v.name for v in field.enum_type.values])
    if field.message_type is None:
        return text
    name = field.message_type.full_name
    if name in ("google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"):
        values = json_values(strings(ids, surrogates=not typed))
        return st.dictionaries(text, values, max_size=4) if name == "google.protobuf.Struct" else values
    if name == "google.protobuf.Timestamp":
        times = st.sampled_from(["2024-01-31T12:00:00Z", "1970-01-01T00:00:00Z"])
        return times if typed else times | text
    if name == "google.protobuf.FieldMask":
        return st.lists(st.sampled_from(["name", "status", "filters", "properties", "id", "colour"]), max_size=3).map(
            ",".join
        )
    if name.startswith("google.protobuf."):
        return st.none()
    return message_json(field.message_type, ids, typed, depth + 1)


def message_json(descriptor: Descriptor, ids: list[str], typed: bool, depth: int = 0) -> st.SearchStrategy[dict]:
    """A JSON object for a message: some of its fields (and, unless `typed`, some it does not have)."""
    if depth > 3:
        return st.just({})
    optional = {f.name: st.deferred(lambda f=f: field_value(f, ids, typed, depth)) for f in descriptor.fields}
    if not typed:
        optional["colour"] = json_values(strings(ids, surrogates=True))  # an unknown field
    return st.fixed_dictionaries({}, optional=optional)


# --- REST requests, from the route table -------------------------------------------------------


def route_table(running) -> list:
    """The routes the server serves: built as Server.start builds them, from the same servicers."""
    services = servicers(running.server.backend, running.settings)
    return list(build_app([(d, s) for d, s, _ in services], raw_routes=raw_routes(services, running.settings)).routes)


_VARIABLE = re.compile(r"\{([^}=]+)(?:=([^}]*))?\}")


@st.composite
def rest_request(draw, routes: list, ids: list[str], upstream: str) -> dict:
    route = draw(st.sampled_from(routes))
    handler = route.endpoint
    rpc = hasattr(handler, "method")
    methods = sorted(route.methods - {"*"}) or ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    method = draw(st.sampled_from(methods) | st.sampled_from(["PUT", "DELETE"]))  # sometimes a verb it lacks

    def fill(match: re.Match) -> str:
        if match.group(2) == "**":
            return draw(proxy_paths(ids, upstream))
        return quote(draw(strings(ids, surrogates=False)), safe="")

    path = _VARIABLE.sub(fill, route.template.template)
    text = strings(ids, surrogates=True)
    if rpc:
        query_fields = st.fixed_dictionaries({}, optional={
            f.name: st.lists(st.one_of(text, st.integers().map(str)), min_size=1, max_size=2)
            for f in handler.method.input_type.fields
        })
        nested_fields = st.just({"health.status": ["sick\x00"], "page_size": ["5000"], "colour": ["red"]})
        query = draw(query_fields | nested_fields)
    else:
        query = draw(st.dictionaries(text, st.lists(text, max_size=2), max_size=3))
    query_string = urlencode(query, doseq=True, errors="surrogatepass") if query else ""

    body = b""
    if rpc and handler.body:
        descriptor = handler.method.input_type
        if handler.body != "*":
            descriptor = descriptor.fields_by_name[handler.body].message_type or descriptor
        document = draw(message_json(descriptor, ids, typed=False) | json_values(text))
        body = json.dumps(document).encode()  # NaN and Infinity as JavaScript spells them
        body = draw(st.sampled_from([body, body, b"[" * 100_000, body[: len(body) // 2]]) | st.binary(max_size=40))
    elif not rpc or draw(st.booleans()):
        body = draw(st.binary(max_size=64))

    encoding = draw(st.sampled_from([None, None, "gzip", "deflate", "gzip-unencoded", "br", "gzip, identity"]))
    headers = {"x-headwater-timeout": str(CALL_TIMEOUT)}
    if encoding == "gzip-unencoded":
        headers["content-encoding"] = "gzip"
    elif encoding:
        headers["content-encoding"] = encoding
        body = gzip.compress(body) if "gzip" in encoding else zlib.compress(body) if encoding == "deflate" else body
    content_type = draw(st.sampled_from([
        "application/json", "application/json", None, "text/plain", "application/x-www-form-urlencoded",
        "application/json; charset=utf-8",
    ]))
    if content_type:
        headers["content-type"] = content_type
    token = draw(st.sampled_from(["valid", "valid", "valid", None, "Bearer hw_not-a-token"]))
    return {"method": method, "path": path, "query": query_string, "body": body, "headers": headers, "token": token}


def proxy_paths(ids: list[str], upstream: str) -> st.SearchStrategy[str]:
    """What a proxy route's {path=**} may hold: relative paths to the fake Stripe, and absolute URLs
    to it or broken ones (never a host that would be called: the network is loopback only)."""
    segment = st.text(max_size=8).map(lambda t: quote(t, safe=""))
    host = upstream.removeprefix("http://")
    return st.one_of(
        st.lists(segment, max_size=4).map("/".join),
        st.sampled_from([
            "v1/customers", "v1/customers/" + ids[-1], "v1/nothing-here", "../v1/customers", "%2e%2e/x",
            f"http://{host}/v1/customers", f"http:/{host}/v1/customers", "http://127.0.0.1:4x3/v1",
            "http://127.0.0.1:99999/v1", "http://127.0.0.1:%2534/v1", "https://evil.example/x",
            "ftp://127.0.0.1/x", f"http://user:pw@{host}/x", "v1/customers%00", "x%0d%0aInjected: 1",
        ]),
    )


def passed_through(response: httpx.Response) -> bool:
    """An upstream's own answer, which the proxy passes on as it came (its 5xx too)."""
    return "x-headwater-request-id" in response.headers


def applied_upstream(error_details: list) -> bool:
    """A mutation that failed after writing some records (documented: those stay applied)."""
    return any(d.get("@type", "").endswith("MutationFailure") and d.get("applied") for d in error_details)


async def test_no_rest_input_answers_5xx_or_writes_when_refused(fuzzed):
    running, client, ids, upstream = fuzzed
    run = blocking(asyncio.get_running_loop())
    routes = route_table(running)
    assert any(hasattr(r.endpoint, "method") for r in routes) and any(not hasattr(r.endpoint, "method") for r in routes)
    caller = httpx.AsyncClient(base_url=running.http_url, timeout=30)

    @FUZZ_SETTINGS
    @given(rest_request(routes, ids, upstream))
    def no_5xx(request):
        headers = dict(request["headers"])
        if request["token"] == "valid":
            headers["authorization"] = f"Bearer {client.token}"
        elif request["token"]:
            headers["authorization"] = request["token"]
        url = request["path"] + ("?" + request["query"] if request["query"] else "")
        before = run(table_rows(running))
        try:
            response = run(caller.request(request["method"], url, content=request["body"], headers=headers))
        except (httpx.InvalidURL, httpx.LocalProtocolError, UnicodeEncodeError):
            reject()  # httpx will not send it: not a request the server can meet
        described = f"{request['method']} {url[:300]} {headers} {request['body'][:200]!r} -> {response.status_code} {response.text[:300]}"
        assert response.status_code < 500 or passed_through(response), described
        if response.status_code >= 400 and not passed_through(response):
            # Our errors are JSON (but a HEAD's answer has no body); aiohttp's own refusals (a
            # request line too long) are text.
            is_json = response.content and response.headers.get("content-type") == "application/json"
            body = response.json() if is_json else {}
            if not applied_upstream(body.get("details", [])):
                refused_writes(before, run(table_rows(running)), described)

    try:
        await asyncio.to_thread(no_5xx)
    finally:
        await caller.aclose()


# --- gRPC requests, from the descriptors ------------------------------------------------------


def grpc_methods(running) -> list:
    """(full method name, method descriptor) of every method the servicers serve."""
    return [
        (f"/{service.full_name}/{method.name}", method)
        for service, _, _ in servicers(running.server.backend, running.settings)
        for method in service.methods
    ]


def grpc_outcome_is_fine(error: grpc.aio.AioRpcError) -> bool:
    """Not a crash (INTERNAL, UNKNOWN), not a stream dropped for its trailers' size; the one
    documented INTERNAL (read-your-writes timing out) is fine."""
    details = error.details() or ""
    if details.startswith("Stream removed"):
        return False
    if error.code() == grpc.StatusCode.INTERNAL:
        return details.startswith("Timed out waiting for consumers")
    return error.code() not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS)


def grpc_applied_upstream(error: grpc.aio.AioRpcError) -> bool:
    raw = dict(error.trailing_metadata() or ()).get("grpc-status-details-bin")
    if raw is None:
        return False
    for packed in status_pb2.Status.FromString(raw).details:
        failure = mutation_pb2.MutationFailure()
        if packed.Unpack(failure) and failure.applied:
            return True
    return False


async def call_grpc(client, method, request_bytes: bytes, anonymous: bool):
    """Sends raw request bytes; returns the error (None when the call succeeded)."""
    metadata = () if anonymous else client.metadata
    try:
        if method.server_streaming:
            call = client.channel.unary_stream(_path(method))
            async for _ in call(request_bytes, metadata=metadata, timeout=CALL_TIMEOUT / 4):
                break
        else:
            call = client.channel.unary_unary(_path(method))
            await call(request_bytes, metadata=metadata, timeout=CALL_TIMEOUT)
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and method.server_streaming:
            return None  # a stream with nothing to send runs until its deadline
        return error
    return None


def _path(method) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


@st.composite
def grpc_request(draw, methods: list, ids: list[str], raw: bool) -> tuple:
    _, method = draw(st.sampled_from(methods))
    request_class = message_factory.GetMessageClass(method.input_type)
    document = draw(message_json(method.input_type, ids, typed=True))
    try:
        message = json_format.ParseDict(document, request_class())
    except json_format.ParseError:
        reject()  # a value json_format refuses (a FieldMask path it cannot spell): not a message
    data = message.SerializeToString()
    if raw:
        data = draw(st.one_of(
            st.binary(max_size=64),
            st.integers(0, max(len(data) - 1, 0)).map(lambda cut: data[:cut]),
            st.tuples(st.integers(0, max(len(data) - 1, 0)), st.integers(0, 255)).map(
                lambda change: data[: change[0]] + bytes([change[1]]) + data[change[0] + 1 :]
            ),
            st.binary(min_size=1, max_size=8).map(lambda tail: data + tail),
        ))
    return method, data, draw(st.sampled_from([False, False, False, True]))


def grpc_fuzz(raw: bool):
    async def test(fuzzed):
        running, client, ids, _ = fuzzed
        run = blocking(asyncio.get_running_loop())

        @FUZZ_SETTINGS
        @given(grpc_request(grpc_methods(running), ids, raw))
        def no_crash(request):
            method, data, anonymous = request
            before = run(table_rows(running))
            error = run(call_grpc(client, method, data, anonymous))
            described = f"{_path(method)} {data[:200]!r} anonymous={anonymous} -> {error!r}"
            if error is None:
                return
            assert grpc_outcome_is_fine(error), described
            if not grpc_applied_upstream(error):
                refused_writes(before, run(table_rows(running)), described)

        await asyncio.to_thread(no_crash)

    return test


test_no_grpc_message_answers_internal_or_unknown_or_writes_when_refused = grpc_fuzz(raw=False)
test_no_grpc_bytes_answer_internal_or_unknown_or_write = grpc_fuzz(raw=True)
