"""The REST bridge (headwater.rest): routing and JSON transcoding, over a real HTTP server.

The servicers here are small echoes that report what arrived (ids, masks, headers, deadline): they
test the bridge only. The real servicers are tested through the whole server elsewhere.

Besides the real SyncService, CredentialService and StreamService descriptors, a test-only service
(`BridgeTestService`, built in memory below) covers what those do not use: `body: "*"`,
`additional_bindings`, multi-segment variables, `:verb` suffixes, enums and other scalar types,
`response_body` on a repeated field, and a streaming method.
"""

from __future__ import annotations

import asyncio
import contextlib
import doctest
import logging
import socket

import grpc
import httpx
import pytest
import pytest_asyncio
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from headwater.errors import ApiError, not_found
from headwater.rest import (
    DuplicateRouteError,
    Match,
    RawRequest,
    RawResponse,
    Route,
    RouteTable,
    build_app,
    compile_template,
    serve,
)
from headwater.v1 import credential_pb2, stream_pb2, sync_pb2

SYNC = sync_pb2.DESCRIPTOR.services_by_name["SyncService"]
CREDENTIAL = credential_pb2.DESCRIPTOR.services_by_name["CredentialService"]
STREAM = stream_pb2.DESCRIPTOR.services_by_name["StreamService"]


# --- a test-only service, built in memory --------------------------------------------------

_F = descriptor_pb2.FieldDescriptorProto


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _message(file, name, *fields):
    """fields: (name, type, type_name or None, repeated?, proto3 optional?)"""
    msg = file.message_type.add(name=name)
    for number, (fname, ftype, type_name, repeated, optional) in enumerate(fields, start=1):
        field = msg.field.add(
            name=fname,
            number=number,
            type=ftype,
            label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
            json_name=_camel(fname),
        )
        if type_name:
            field.type_name = type_name
        if optional:
            field.proto3_optional = True
            field.oneof_index = len(msg.oneof_decl)
            msg.oneof_decl.add(name=f"_{fname}")


def _f(name, ftype, type_name=None, repeated=False, optional=False):
    return (name, ftype, type_name, repeated, optional)


def _build_test_service():
    file = descriptor_pb2.FileDescriptorProto(
        name="headwater/bridgetest/v1/bridge_test.proto",
        package="headwater.bridgetest.v1",
        syntax="proto3",
        dependency=[
            "google/api/annotations.proto",
            "google/protobuf/struct.proto",
            "google/protobuf/timestamp.proto",
        ],
    )
    kind = file.enum_type.add(name="Kind")
    for number, name in enumerate(["KIND_UNSPECIFIED", "KIND_A", "KIND_B"]):
        kind.value.add(name=name, number=number)
    pkg = ".headwater.bridgetest.v1."
    _message(
        file, "Inner",
        _f("note", _F.TYPE_STRING), _f("level", _F.TYPE_INT32, optional=True),
        _f("child", _F.TYPE_MESSAGE, pkg + "Inner"),
    )  # fmt: skip
    _message(
        file, "Thing",
        _f("id", _F.TYPE_STRING), _f("name", _F.TYPE_STRING),
        _f("inner", _F.TYPE_MESSAGE, pkg + "Inner"),
        _f("inners", _F.TYPE_MESSAGE, pkg + "Inner", repeated=True),
        _f("extra", _F.TYPE_MESSAGE, ".google.protobuf.Struct"),
        _f("at", _F.TYPE_MESSAGE, ".google.protobuf.Timestamp"),
    )  # fmt: skip
    _message(
        file, "EchoRequest",
        _f("id", _F.TYPE_STRING), _f("parent", _F.TYPE_STRING),
        _f("thing", _F.TYPE_MESSAGE, pkg + "Thing"),
        _f("kind", _F.TYPE_ENUM, pkg + "Kind"), _f("flag", _F.TYPE_BOOL), _f("count", _F.TYPE_INT32),
        _f("ratio", _F.TYPE_DOUBLE), _f("tags", _F.TYPE_STRING, repeated=True),
        _f("since", _F.TYPE_MESSAGE, ".google.protobuf.Timestamp"),
        _f("note", _F.TYPE_STRING, optional=True), _f("big", _F.TYPE_INT64),
    )  # fmt: skip
    _message(
        file, "EchoResponse",
        _f("request", _F.TYPE_MESSAGE, pkg + "EchoRequest"),
        _f("metadata", _F.TYPE_STRING, repeated=True), _f("peer", _F.TYPE_STRING),
        _f("time_remaining", _F.TYPE_DOUBLE),
    )  # fmt: skip

    service = file.service.add(name="BridgeTestService")

    def rpc(name, rule, server_streaming=False):
        method = service.method.add(
            name=name,
            input_type=pkg + "EchoRequest",
            output_type=pkg + "EchoResponse",
            server_streaming=server_streaming,
        )
        method.options.Extensions[annotations_pb2.http].CopyFrom(rule)

    R = http_pb2.HttpRule
    rpc(
        "Echo",
        R(
            post="/test/echo/{id}",
            body="*",
            additional_bindings=[
                R(get="/test/echo/{id}"),
                R(put="/test/things/{thing.id}", body="thing"),
                R(get="/test/{parent=projects/*/things}/{id}"),
                R(post="/test/echo/{id}:shout", body="*"),
                R(custom=http_pb2.CustomHttpPattern(kind="SEARCH", path="/test/search")),
            ],
        ),
    )
    rpc("Metadata", R(get="/test/metadata", response_body="metadata"))
    rpc("Slow", R(post="/test/slow", body="*"))
    rpc("Crash", R(get="/test/crash"))
    rpc("Missing", R(get="/test/missing"))
    rpc("Watch", R(get="/test/watch"), server_streaming=True)

    pool = descriptor_pool.Default()
    pool.Add(file)
    return pool.FindServiceByName("headwater.bridgetest.v1.BridgeTestService")


TEST_SERVICE = _build_test_service()
EchoResponse = message_factory.GetMessageClass(TEST_SERVICE.methods_by_name["Echo"].output_type)


# --- echo servicers ----------------------------------------------------------------------------


def _header(context, name: str) -> str:
    return dict(context.invocation_metadata()).get(name, "")


class BridgeTestServicer:
    async def Echo(self, request, context):
        return EchoResponse(
            request=request,
            metadata=[f"{k}={v}" for k, v in context.invocation_metadata()],
            peer=context.peer(),
            time_remaining=context.time_remaining(),
        )

    async def Metadata(self, request, context):
        return EchoResponse(metadata=[f"{k}={v}" for k, v in context.invocation_metadata() if k.startswith("x-")])

    async def Slow(self, request, context):
        await asyncio.sleep(request.ratio)
        return EchoResponse(time_remaining=context.time_remaining())

    async def Crash(self, request, context):
        raise RuntimeError("connection to postgres://admin:hunter2@db failed")

    async def Watch(self, request, context):  # streaming: never reached over REST
        yield EchoResponse()


class SyncEcho:
    async def CreateSync(self, request, context):
        sync = sync_pb2.Sync()
        sync.CopyFrom(request.sync)
        sync.id = "sync_1"
        return sync_pb2.CreateSyncResponse(sync=sync)

    async def GetSync(self, request, context):
        if request.id == "missing":
            raise not_found("sync", request.id)
        if request.id == "busy":
            raise ApiError(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", headers={"Retry-After": "3"})
        return sync_pb2.GetSyncResponse(sync=sync_pb2.Sync(id=request.id, name=_header(context, "authorization")))

    async def ListSyncs(self, request, context):
        sync = sync_pb2.Sync(name=f"page_size={request.page_size}", status=request.health.status)
        return sync_pb2.ListSyncsResponse(data=[sync], next_page_token="next")

    async def UpdateSync(self, request, context):
        name = ",".join(request.update_mask.paths)
        sync = sync_pb2.Sync(id=request.id, name=name, rate_limit=request.sync.rate_limit)
        return sync_pb2.UpdateSyncResponse(sync=sync)


class CredentialEcho:
    async def CreateCredential(self, request, context):
        return credential_pb2.CreateCredentialResponse(credential=request.credential)


class StreamEcho:
    async def GetStream(self, request, context):
        return stream_pb2.GetStreamResponse(stream=stream_pb2.Stream(id=request.id))

    async def DeleteStream(self, request, context):
        return stream_pb2.DeleteStreamResponse(id=request.id, deleted=True)


# --- raw routes --------------------------------------------------------------------------------


async def raw_echo(request: RawRequest) -> RawResponse:
    headers = [
        ("content-type", "application/octet-stream"),
        ("x-method", request.method),
        ("x-sync-id", request.path_params["sync_id"]),
        ("x-path", request.path_params["path"]),
        ("x-query", request.query_string.decode()),
        ("x-auth", _header(request.context, "authorization")),
    ]
    return RawResponse(207, headers, request.body)


async def raw_status(request: RawRequest) -> RawResponse:
    return RawResponse(200, [("content-type", "text/plain")], b"status route")


async def raw_chunks(request: RawRequest) -> RawResponse:
    async def chunks():
        for i in range(3):
            yield f"chunk{i};".encode()

    return RawResponse(200, [("content-type", "text/plain")], chunks())


async def raw_denied(request: RawRequest) -> RawResponse:
    raise ApiError(grpc.StatusCode.PERMISSION_DENIED, "This domain is invalid for the current integration")


RAW_ROUTES = [
    (("*",), "/v1/proxy/sync/{sync_id}/{path=**}", raw_echo),
    (("GET",), "/v1/proxy/sync/{sync_id}/status", raw_status),
    (("GET",), "/test/raw/chunks", raw_chunks),
    (("POST",), "/test/raw/denied", raw_denied),
]


def make_app(**kwargs):
    services = [
        (SYNC, SyncEcho()),
        (CREDENTIAL, CredentialEcho()),
        (STREAM, StreamEcho()),
        (TEST_SERVICE, BridgeTestServicer()),
    ]
    return build_app(services, RAW_ROUTES, **kwargs)


# --- a real HTTP server on an ephemeral port ---------------------------------------------------


@contextlib.asynccontextmanager
async def serving(app):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = await serve(app, sock)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", trust_env=False) as http:
            yield http
    finally:
        await server.stop(grace=1)


@pytest_asyncio.fixture(scope="module")
async def http():
    async with serving(make_app()) as client:
        yield client


def violation(response: httpx.Response) -> tuple[str, str]:
    """The first field violation of an INVALID_ARGUMENT body: (field, description)."""
    body = response.json()
    assert response.status_code == 400, body
    assert response.headers["content-type"] == "application/json"
    assert body["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    first = body["details"][0]["field_violations"][0]
    return first["field"], first["description"]


# --- routing -----------------------------------------------------------------------------------


def test_literal_segment_wins_over_wildcard():
    table = RouteTable(
        [
            Route(frozenset({"GET"}), compile_template("/v1/{rest=**}"), "rest"),
            Route(frozenset({"GET"}), compile_template("/v1/syncs/{id}"), "one"),
            Route(frozenset({"GET"}), compile_template("/v1/syncs/search"), "literal"),
            Route(frozenset({"POST"}), compile_template("/v1/syncs/{id}:run"), "verb"),
        ]
    )
    assert table.lookup("GET", "/v1/syncs/search").route.endpoint == "literal"
    found = table.lookup("GET", "/v1/syncs/s%201")
    assert (found.route.endpoint, found.path_params) == ("one", {"id": "s 1"})
    found = table.lookup("GET", "/v1/syncs/s1/history")
    assert (found.route.endpoint, found.path_params) == ("rest", {"rest": "syncs/s1/history"})
    found = table.lookup("POST", "/v1/syncs/s1:run")
    assert (found.route.endpoint, found.path_params) == ("verb", {"id": "s1"})
    assert table.lookup("GET", "/v2/syncs").match is Match.NONE
    found = table.lookup("DELETE", "/v1/syncs/search")
    assert (found.match, found.allow) == (Match.PARTIAL, ("GET",))


async def test_literal_route_wins_over_double_wildcard_raw_route(http):
    assert (await http.get("/v1/proxy/sync/s1/status")).text == "status route"
    # POST is not the literal route's verb: the `**` route answers it.
    response = await http.post("/v1/proxy/sync/s1/status")
    assert (response.status_code, response.headers["x-path"]) == (207, "status")


def test_path_template_compiles_variables_and_verbs():
    template = compile_template("/v1/{parent=projects/*}/syncs/{sync.id}:run")
    assert template.verb == "run"
    assert template.match("v1/projects/p1/syncs/s1:run".split("/")) == {"parent": "projects/p1", "sync.id": "s1"}
    assert template.match("v1/projects/p1/syncs/s1".split("/")) is None
    rest = compile_template("/v1/proxy/{path=**}")
    assert rest.match(["v1", "proxy"]) == {"path": ""}
    assert rest.match(["v1", "proxy", "a", "b%2Fc", ""]) == {"path": "a/b%2Fc/"}
    for bad in ["v1/x", "/v1/{path=**}/x", "/v1/{a}/{a}", "/v1/{a", "/v1/{a.}"]:
        with pytest.raises(ValueError):
            compile_template(bad)


def test_template_compiler_docstring_examples_hold():
    from headwater.rest import _routing

    assert doctest.testmod(_routing).failed == 0


def test_duplicate_route_fails_at_build():
    with pytest.raises(DuplicateRouteError, match="/v1/syncs/"):
        build_app([(SYNC, SyncEcho())], [(("GET",), "/v1/syncs/{other_name}", raw_status)])
    with pytest.raises(DuplicateRouteError):
        build_app([(SYNC, SyncEcho()), (SYNC, SyncEcho())])
    with pytest.raises(DuplicateRouteError):  # "*" overlaps every verb
        build_app([], [(("*",), "/x/{a}", raw_status), (("PUT",), "/x/{b}", raw_status)])
    build_app([], [(("GET",), "/x/{a}", raw_status), (("PUT",), "/x/{b}", raw_status)])  # fine


async def test_unknown_path_answers_404_with_error_body(http):
    response = await http.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json()["code"] == grpc.StatusCode.NOT_FOUND.value[0]


async def test_wrong_verb_answers_405_with_allow_header(http):
    response = await http.put("/v1/streams/st_1")
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET, PATCH"
    body = response.json()
    assert (body["code"], body["message"]) == (grpc.StatusCode.UNIMPLEMENTED.value[0], "method not allowed")
    assert response.headers["content-type"] == "application/json"


async def test_streaming_methods_get_no_route(http):
    assert (await http.get("/test/watch")).status_code == 404


async def test_additional_bindings_reach_the_same_method(http):
    posted = await http.post("/test/echo/a", json={"count": 2})
    got = await http.get("/test/echo/b", params={"count": 3})
    put = await http.put("/test/things/t1", json={"name": "n"})
    nested = await http.get("/test/projects/p1/things/c")
    verb = await http.post("/test/echo/d:shout", json={})
    custom = await http.request("SEARCH", "/test/search", params={"tags": ["x"]})
    assert [r.status_code for r in (posted, got, put, nested, verb, custom)] == [200] * 6
    assert posted.json()["request"]["count"] == 2
    assert got.json()["request"]["count"] == 3
    assert put.json()["request"]["thing"]["id"] == "t1"
    assert nested.json()["request"]["parent"] == "projects/p1/things"
    assert verb.json()["request"]["id"] == "d"
    assert custom.json()["request"]["tags"] == ["x"]


# --- JSON in -----------------------------------------------------------------------------------


async def test_unknown_json_field_is_rejected_naming_it(http):
    response = await http.post("/v1/credentials", json={"provider": "stripe", "propertees": {"kind": "x"}})
    field, description = violation(response)
    assert field == "credential.propertees"
    assert "properties" in description  # "unknown field (did you mean 'properties'?)"
    nested = await http.post("/v1/syncs", json={"credential": {"provider": "stripe", "propertees": {}}})
    assert violation(nested)[0] == "sync.credential.propertees"


async def test_struct_fields_accept_any_keys(http):
    properties = {"kind": "stripe_oauth2", "anything": {"deep": [1, {"x": None}]}}
    response = await http.post("/v1/credentials", json={"provider": "stripe", "properties": properties})
    assert response.status_code == 200, response.json()
    assert response.json()["properties"] == properties


async def test_json_accepts_proto_and_camel_case_names(http):
    body = {"collectionIds": ["stripe:customer"], "rate_limit": {"allowedRequests": 5}, "maxAgeDays": 7}
    sync = (await http.post("/v1/syncs", json=body)).json()
    assert sync["collection_ids"] == ["stripe:customer"]
    assert sync["rate_limit"]["allowed_requests"] == 5
    assert sync["max_age_days"] == 7


async def test_malformed_json_is_rejected_on_body(http):
    response = await http.post("/v1/syncs", content=b'{"name": ', headers={"content-type": "application/json"})
    field, description = violation(response)
    assert field == "body"
    assert "not valid JSON" in description


async def test_wrong_value_type_is_rejected_naming_the_field(http):
    response = await http.post("/v1/syncs", json={"rate_limit": {"allowed_requests": "many"}})
    assert violation(response) == ("sync.rate_limit.allowed_requests", "must be an integer (int32)")
    response = await http.post("/v1/syncs", json={"collection_ids": "stripe:customer"})
    assert violation(response) == ("sync.collection_ids", "must be a JSON array")
    response = await http.post("/v1/syncs", json=["not", "an", "object"])
    assert violation(response) == ("sync", "must be a JSON object")
    response = await http.post("/test/echo/x", json={"kind": "KIND_Z"})
    assert violation(response) == ("kind", "must be one of KIND_UNSPECIFIED, KIND_A, KIND_B")


async def test_empty_body_is_an_empty_message(http):
    response = await http.post("/v1/syncs", content=b"")
    assert response.status_code == 200
    assert response.json()["id"] == "sync_1"
    assert response.json()["collection_ids"] == []


async def test_path_value_wins_over_body(http):
    response = await http.post("/test/echo/from-path", json={"id": "from-body", "count": 1})
    assert response.json()["request"]["id"] == "from-path"
    response = await http.put("/test/things/from-path", json={"id": "from-body", "name": "n"})
    thing = response.json()["request"]["thing"]
    assert (thing["id"], thing["name"]) == ("from-path", "n")


async def test_body_star_ignores_query_parameters(http):
    response = await http.post("/test/echo/x?count=9&no_such_field=1", json={"flag": True})
    request = response.json()["request"]
    assert (request["count"], request["flag"]) == (0, True)


async def test_query_parameters_set_fields_by_type(http):
    params = [
        ("kind", "KIND_B"), ("flag", "true"), ("count", "-3"), ("ratio", "1.5"), ("big", "9007199254740993"),
        ("tags", "a"), ("tags", "b"), ("since", "2024-01-31T12:00:00Z"), ("thing.inner.note", "hi"),
        ("thing.name", "n"), ("note", ""),
    ]  # fmt: skip
    request = (await http.get("/test/echo/x", params=params)).json()["request"]
    assert request["kind"] == "KIND_B"
    assert request["flag"] is True
    assert (request["count"], request["ratio"], request["big"]) == (-3, 1.5, "9007199254740993")
    assert request["tags"] == ["a", "b"]
    assert request["since"] == "2024-01-31T12:00:00Z"
    assert (request["thing"]["inner"]["note"], request["thing"]["name"]) == ("hi", "n")
    assert request["note"] == ""  # given, though empty: set
    sync = (await http.get("/v1/syncs", params={"page_size": "5", "health.status": "error"})).json()
    assert sync["data"][0]["name"] == "page_size=5"
    assert sync["data"][0]["status"] == "error"


async def test_unknown_or_ill_typed_query_parameter_is_rejected_naming_it(http):
    assert violation(await http.get("/v1/syncs?pagesize=5"))[0] == "pagesize"
    assert violation(await http.get("/v1/syncs?page_size=five")) == ("page_size", "must be an integer (int32)")
    assert violation(await http.get("/test/echo/x?flag=yes"))[0] == "flag"
    assert violation(await http.get("/test/echo/x?count=1&count=2")) == ("count", "given more than once")
    assert violation(await http.get("/v1/syncs?health=error"))[0] == "health"


# --- update masks ------------------------------------------------------------------------------


async def test_patch_fills_update_mask_from_body_keys(http):
    body = {
        "name": "renamed",
        "rateLimit": {"allowedRequests": 5, "interval": 1},
        "metadata": {"team": {"owner": "ops"}},
        "collection_ids": [],
    }
    response = await http.patch("/v1/syncs/s1", json=body)
    assert response.status_code == 200, response.json()
    sync = response.json()
    assert sync["id"] == "s1"
    assert sync["name"] == "collection_ids,metadata,name,rate_limit.allowed_requests,rate_limit.interval"
    assert sync["rate_limit"] == {"allowed_requests": 5, "interval": 1, "max_concurrent_requests": 0}


async def test_patch_keeps_an_update_mask_given_in_the_query(http):
    response = await http.patch("/v1/syncs/s1?update_mask=name,rateLimit.allowedRequests", json={"name": "x"})
    assert response.json()["name"] == "name,rate_limit.allowed_requests"


async def test_patch_with_an_empty_object_masks_the_whole_message_field(http):
    response = await http.patch("/v1/syncs/s1", json={"rate_limit": {}})
    assert response.json()["name"] == "rate_limit"


# --- JSON out ----------------------------------------------------------------------------------


async def test_response_body_returns_bare_message_with_nulls_for_unset_fields(http):
    response = await http.get("/v1/syncs/s1")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    sync = response.json()
    assert "sync" not in sync
    assert sync["id"] == "s1"
    for key in ("rate_limit", "credential", "health", "max_age_days", "metadata", "created_at", "external_id"):
        assert key in sync and sync[key] is None, key
    assert sync["collection_ids"] == [] and sync["provider"] == ""  # no presence: its default


async def test_nulls_reach_nested_and_repeated_messages_but_not_well_known_types(http):
    thing = {"inner": {"note": "a"}, "inners": [{"note": "b"}], "extra": {"k": {}}, "at": "2024-01-31T12:00:00Z"}
    request = (await http.post("/test/echo/x", json={"thing": thing})).json()["request"]
    assert request["note"] is None and request["since"] is None
    out = request["thing"]
    assert out["inner"] == {"note": "a", "level": None, "child": None}
    assert out["inners"] == [{"note": "b", "level": None, "child": None}]
    assert out["extra"] == {"k": {}}
    assert out["at"] == "2024-01-31T12:00:00Z"


async def test_response_body_on_a_repeated_field_returns_the_list(http):
    response = await http.get("/test/metadata", headers={"x-one": "1"})
    assert response.json() == ["x-one=1"]


async def test_list_response_has_documented_shape(http):
    response = await http.get("/v1/syncs")
    body = response.json()
    assert set(body) == {"data", "next_page_token"}
    assert body["data"][0]["credential"] is None


# --- context, errors, deadlines ----------------------------------------------------------------


async def test_headers_reach_the_servicer_as_lowercase_metadata(http):
    response = await http.get("/v1/syncs/s1", headers={"Authorization": "Bearer tok_1"})
    assert response.json()["name"] == "Bearer tok_1"
    echoed = (await http.get("/test/echo/x", headers={"X-Custom": "Yes"})).json()
    assert "x-custom=Yes" in echoed["metadata"]
    assert echoed["peer"].startswith("ipv4:127.0.0.1:")


async def test_api_error_renders_its_status_body_and_headers(http):
    response = await http.get("/v1/syncs/missing")
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert body["error"] == f"Error: {body['message']}"
    busy = await http.get("/v1/syncs/busy")
    assert (busy.status_code, busy.headers["retry-after"]) == (429, "3")


async def test_servicer_crash_answers_500_without_leaking(http, caplog):
    with caplog.at_level(logging.ERROR, logger="headwater.rest"):
        response = await http.get("/test/crash")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json()["message"] == "internal error"
    assert "hunter2" not in response.text
    assert any("hunter2" in r.exc_text for r in caplog.records if r.name == "headwater.rest" and r.exc_text)


async def test_unimplemented_method_answers_501(http):
    assert (await http.get("/test/missing")).status_code == 501


async def test_deadline_header_bounds_the_call(http):
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await http.post("/test/slow", json={"ratio": 5}, headers={"grpc-timeout": "200m"})
    assert response.status_code == 504
    assert response.json()["code"] == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert loop.time() - started < 2
    response = await http.post("/test/slow", json={"ratio": 5}, headers={"x-headwater-timeout": "0.2"})
    assert response.status_code == 504
    response = await http.post("/test/slow", json={"ratio": 0.01}, headers={"x-headwater-timeout": "2"})
    assert response.status_code == 200
    assert 1 < response.json()["time_remaining"] < 2


async def test_deadline_counts_down_from_the_header_or_30_seconds(http):
    remaining = (await http.get("/test/echo/x", headers={"grpc-timeout": "5S"})).json()["time_remaining"]
    assert 4 < remaining <= 5
    remaining = (await http.get("/test/echo/x")).json()["time_remaining"]
    assert 29 < remaining <= 30
    assert violation(await http.get("/test/echo/x", headers={"grpc-timeout": "soon"}))[0] == "grpc-timeout"


async def test_body_over_the_limit_answers_413():
    async with serving(make_app(max_body_bytes=1024)) as small:
        response = await small.post("/v1/syncs", content=b"{" + b" " * 2048 + b"}")
        assert response.status_code == 413
        assert response.json()["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        assert (await small.post("/v1/syncs", json={"name": "small"})).status_code == 200


# --- raw routes --------------------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["GET", "POST", "PUT", "PATCH", "DELETE", "PURGE"])
async def test_raw_route_answers_any_verb(http, verb):
    response = await http.request(verb, "/v1/proxy/sync/s1/v1/customers")
    assert response.status_code == 207
    assert response.headers["x-method"] == verb
    assert (response.headers["x-sync-id"], response.headers["x-path"]) == ("s1", "v1/customers")


async def test_raw_route_passes_bytes_and_query_string_unchanged(http):
    body = bytes(range(256)) * 4
    query = "a=1&a=2&b=%20x&flag"
    response = await http.post(
        f"/v1/proxy/sync/s1/v1/files/?{query}",
        content=body,
        headers={"authorization": "Bearer tok", "content-type": "application/pdf"},
    )
    assert response.content == body
    assert response.headers["x-query"] == query
    assert response.headers["x-path"] == "v1/files/"
    assert response.headers["x-auth"] == "Bearer tok"
    empty = await http.get("/v1/proxy/sync/s1")
    assert (empty.status_code, empty.headers["x-path"]) == (207, "")


async def test_raw_route_streams_an_async_iterator_body(http):
    response = await http.get("/test/raw/chunks")
    assert response.text == "chunk0;chunk1;chunk2;"


async def test_raw_route_errors_render_like_rpc_errors(http):
    response = await http.post("/test/raw/denied")
    assert response.status_code == 403
    assert response.json()["message"] == "This domain is invalid for the current integration"
    wrong_verb = await http.delete("/test/raw/denied")
    assert (wrong_verb.status_code, wrong_verb.headers["allow"]) == (405, "POST")
