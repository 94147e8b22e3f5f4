"""The REST bridge: an HTTP server that serves the `google.api.http` routes of protobuf services.

It runs on aiohttp's low-level server (`aiohttp.web.Server`: its C HTTP parser, no router, no
middlewares), which forwards about 1.5x what uvicorn does on one core (BENCHMARKS.md); everything
above the HTTP parsing is ours and small.

For each request:
  1. the route table picks the route (404 unknown path, 405 + Allow for a known path's other verbs);
  2. the body is read as it came (at most `max_body_bytes`, else 413), the deadline taken from
     the headers;
  3. the route's handler answers. Every handler has one shape, `async (RawRequest) -> RawResponse`:
     - an RPC route's handler (`_RpcHandler`) transcodes: the body's Content-Encoding undone
       (`_decoded`), JSON -> request message, every field checked (`headwater.inputs`), then
       `await servicer.Method(request, context)` in-process, then response message -> JSON;
     - a raw route's handler is given by the caller of `build_app` (see `build_app`, `raw_routes`).
  4. an `ApiError` becomes its JSON body and HTTP status; any other exception is logged and
     becomes a bare 500, so no exception text ever reaches the caller.

Serving it:

    http = await serve(build_app(services), sock)    # a bound socket (port 0 works)
    ...
    await http.stop(grace=5)   # stop listening; calls in flight get `grace` s, then are cancelled

Connections are held to `ConnectionLimits`: a request's line and headers must arrive within the
header timeout (a client trickling them is closed with 408), a kept-alive connection waits at most
the idle timeout for its next request, and past the cap new connections are answered 503 and
closed. A request aiohttp cannot parse gets our JSON 400, which never quotes its bytes.
"""

from __future__ import annotations

import asyncio
import http as http_status
import json
import logging
import socket
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import grpc
from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestHandler
from google.api import annotations_pb2, http_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from headwater import tracing
from headwater.errors import ApiError, invalid, raise_if_invalid
from headwater.inputs import request_violations

from . import _transcode as tc
from ._context import RestContext, peer_of, timeout_from_headers
from ._routing import ANY_METHOD, Match, Route, RouteTable, compile_template
from .openapi import OPENAPI_PATH, OpenApiRoute

log = logging.getLogger("headwater.rest")

MAX_BODY_BYTES = 10 * 1024 * 1024  # larger request bodies are answered 413

@dataclass
class RawRequest:
    """What a route handler gets: the HTTP request, untouched, and the call's context."""

    method: str  # "GET", "POST", ...
    path: str  # the percent-encoded request path, e.g. "/v1/proxy/sync/s1/v1/customers"
    path_params: dict[str, str]  # the template's variables, e.g. {"sync_id": "s1", "path": "v1/customers"}
    query_string: bytes  # raw, without the "?"
    headers: list[tuple[str, str]]  # (lowercase name, value), latin-1 decoded (bytes round-trip)
    body: bytes
    context: RestContext  # metadata (= headers), time_remaining() (the deadline), peer()


@dataclass
class RawResponse:
    """What a route handler returns. `body` is bytes or an async iterator of bytes (streamed)."""

    status: int
    headers: Sequence[tuple[str, str]] = ()  # latin-1 text, as HTTP headers are
    body: bytes | AsyncIterator[bytes] = b""


RawHandler = Callable[[RawRequest], Awaitable[RawResponse]]
RawRoute = tuple[tuple[str, ...], str, RawHandler]  # (methods, path template, handler)


def build_app(
    services: Sequence[tuple[ServiceDescriptor, object]],
    raw_routes: Sequence[RawRoute] = (),
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> RestBridge:
    """The bridge serving `services` (descriptor, servicer) over REST, plus `raw_routes`.

    RPC routes come from each unary method's `google.api.http` option and its
    `additional_bindings`; streaming methods and methods without the option get none.

    Raw routes (the one place for them, grpc-gateway's `HandlePath`) are for what JSON
    transcoding cannot express, e.g. the proxy: any verb, bytes in and out unchanged.
    A raw route is `(methods, template, handler)`:

        async def proxy(request: RawRequest) -> RawResponse:
            ...  # request.path_params["path"], request.query_string, request.body, request.context
            return RawResponse(200, [("content-type", "text/csv")], b"a,b\\n")

        build_app(services, raw_routes=[(("*",), "/v1/proxy/sync/{sync_id}/{path=**}", proxy)])

    `GET /openapi.json` answers the OpenAPI document of all these routes (headwater.rest.openapi);
    a raw handler marked with `openapi.describe` is documented as it says, others as pass-through.

    `methods` are HTTP methods, or ("*",) for any. Raw routes share the route table with the RPC
    routes (same precedence, 404/405, duplicate detection), the body limit and the error
    rendering: raise ApiError for a JSON error answer. The call's deadline (from the headers) is in
    `request.context.time_remaining()`; an RPC route's handler is cancelled when it passes (504),
    while a raw handler keeps it itself, as the proxy does: it spends the time left on waiting for
    the rate limit and on the upstream call, and answers 429 or 504 as fits.

    Raises ValueError (DuplicateRouteError) for two routes with the same method and template, and
    for a rule naming fields the messages do not have.
    """
    table = RouteTable()
    for service, servicer in services:
        for method in service.methods:
            if method.client_streaming or method.server_streaming:
                continue
            rule = method.GetOptions().Extensions[annotations_pb2.http]
            if rule.WhichOneof("pattern") is None:
                continue
            for binding in (rule, *rule.additional_bindings):
                http_method, template = _pattern(binding)
                compiled = compile_template(template)
                handler = _RpcHandler(servicer, method, binding, compiled.variables, max_body_bytes)
                table.add(Route(frozenset({http_method}), compiled, handler))
    for methods, template, handler in raw_routes:
        methods = frozenset(ANY_METHOD if m == ANY_METHOD else m.upper() for m in methods)
        table.add(Route(methods, compile_template(template), handler))
    # The OpenAPI document of this very table (headwater.rest.openapi), no token needed.
    table.add(Route(frozenset({"GET"}), compile_template(OPENAPI_PATH), OpenApiRoute(table)))
    return RestBridge(table, max_body_bytes)


def _pattern(rule: http_pb2.HttpRule) -> tuple[str, str]:
    kind = rule.WhichOneof("pattern")
    if kind == "custom":
        return rule.custom.kind.upper(), rule.custom.path
    return kind.upper(), getattr(rule, kind)


class _RpcHandler:
    """Transcodes one HTTP binding of one unary method: JSON in, servicer call, JSON out."""

    def __init__(
        self, servicer: object, method: MethodDescriptor, rule: http_pb2.HttpRule, variables, max_body_bytes: int
    ):
        self.servicer = servicer
        self.max_body_bytes = max_body_bytes  # a compressed body may not expand past it either
        self.method = method
        self.body = rule.body  # "" (no body), "*" (the whole message) or a field name
        self.response_body = rule.response_body
        self.request_class = message_factory.GetMessageClass(method.input_type)
        request = method.input_type
        for var in variables:
            tc.check_path_field(request, var.name)
        self.path_fields = [".".join(f.name for f in tc.resolve_field_path(request, v.name)) for v in variables]
        for name, message in ((self.body, request), (self.response_body, method.output_type)):
            if name not in ("", "*") and name not in message.fields_by_name:
                raise ValueError(f"{method.full_name}: the http rule names no field {name!r} of {message.full_name}")
        # grpc-gateway fills `update_mask` from the body's keys when the body is one message field.
        mask = request.fields_by_name.get("update_mask")
        body_field = request.fields_by_name.get(self.body)
        self.fill_update_mask = (
            mask is not None
            and mask.message_type is not None
            and mask.message_type.full_name == "google.protobuf.FieldMask"
            and body_field is not None
            and tc.is_plain_message(body_field)
            and not tc.is_repeated(body_field)
        )

    def __repr__(self) -> str:
        return self.method.full_name

    def build_request(self, http: RawRequest) -> Message:
        """The request message, or one INVALID_ARGUMENT listing every mistake: in the JSON (unknown
        fields, wrong types), the query string, the path, and in the message they make (strings
        and JSON values, checked as the gRPC front checks them: `headwater.inputs`)."""
        message = self.request_class()
        violations: list[tuple[str, str]] = []
        if self.body == "*":  # the body is the whole message; the query string is ignored
            tc.merge_object(self.json_body(http), message, "", violations)
        else:
            skip = [*self.path_fields, *([self.body] if self.body else [])]
            from_query = tc.merge_query(http.query_string, message, skip, violations)
            if self.body:
                data = self.json_body(http)
                field = message.DESCRIPTOR.fields_by_name[self.body]
                if tc.is_plain_message(field) and not tc.is_repeated(field):
                    child = getattr(message, self.body)
                    child.SetInParent()  # an empty body is an empty message
                    before = len(violations)
                    tc.merge_object(data, child, self.body, violations)
                    if self.fill_update_mask and "update_mask" not in from_query and len(violations) == before:
                        message.update_mask.paths[:] = tc.update_mask_paths(data, field.message_type)
                else:
                    tc.set_json_value(message, field, data, self.body, violations)
        for name, value in http.path_params.items():  # the path wins over the body
            tc.set_path_value(message, name, value, violations)
        raise_if_invalid(violations + request_violations(message))
        return message

    def json_body(self, http: RawRequest) -> object:
        """The body's JSON value, its Content-Encoding undone; a body of another content type
        than JSON is refused (415)."""
        headers = dict(http.headers)
        body = _decoded(http.body, headers.get("content-encoding", ""), self.max_body_bytes)
        content_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        if body.strip() and content_type and not _is_json(content_type):
            error = invalid("content-type", "must be application/json (the body is JSON)")
            raise _StatusOverride(415, error)
        return tc.parse_json_body(body)

    async def __call__(self, http: RawRequest) -> RawResponse:
        request = self.build_request(http)
        call = getattr(self.servicer, self.method.name, None)
        if call is None:
            raise ApiError(grpc.StatusCode.UNIMPLEMENTED, f"{self.method.full_name} is not implemented")
        response = await call(request, http.context)
        return _json_response(200, tc.response_json(response, self.response_body))


class RestBridge:
    """What `build_app` returns: `handle` answers one HTTP request; `routes` is the route table."""

    def __init__(self, routes: RouteTable, max_body_bytes: int = MAX_BODY_BYTES):
        self.routes = routes
        self.max_body_bytes = max_body_bytes

    async def handle(self, http: web.BaseRequest) -> web.StreamResponse:
        method = http.method
        path, _, query = http.raw_path.partition("?")
        # One span per call when traces are on (headwater.tracing), named by the route it matched.
        with tracing.rest_call(method, path, http.headers, http.transport) as span:
            try:
                found = self.routes.lookup(method, path)
                if found.match is Match.NONE:
                    raise ApiError(grpc.StatusCode.NOT_FOUND, "no route matches this path")
                if found.match is Match.PARTIAL:
                    allow = ", ".join(found.allow)
                    error = ApiError(grpc.StatusCode.UNIMPLEMENTED, "method not allowed", headers={"Allow": allow})
                    raise _StatusOverride(405, error)
                tracing.rest_route(span, method, found.route.template.template)
                headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in http.raw_headers]
                timeout = timeout_from_headers(headers)
                context = RestContext(headers, time.monotonic() + timeout, http.transport)
                request = RawRequest(
                    method=method,
                    path=path,
                    path_params=found.path_params,
                    query_string=query.encode("latin-1"),
                    headers=headers,
                    body=await _read_body(http, self.max_body_bytes),
                    context=context,
                )
                endpoint = found.route.endpoint
                if isinstance(endpoint, _RpcHandler):
                    try:
                        async with asyncio.timeout(context.time_remaining()) as deadline:
                            response = await endpoint(request)
                    except TimeoutError:
                        if deadline.expired():
                            raise ApiError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded") from None
                        raise
                else:  # a raw handler keeps its own deadline (see build_app)
                    response = await endpoint(request)
            except ApiError as error:
                response = _error_response(error)
            except _StatusOverride as override:
                response = _error_response(override.error, override.status)
            except _ClientGone:
                raise ConnectionResetError("the client went away") from None  # aiohttp drops the connection
            except Exception:
                log.exception("REST %s %s failed", method, path)
                response = _error_response(ApiError(grpc.StatusCode.INTERNAL, "internal error"))
            tracing.rest_answered(span, response.status)
            body = response.body
            if isinstance(body, (bytes, bytearray, memoryview)):
                # A content-length header given (a proxied HEAD's, say) is kept; otherwise it is the body's.
                return web.Response(status=response.status, headers=response.headers, body=bytes(body))
            return await _stream(http, response)


@dataclass(frozen=True)
class ConnectionLimits:
    """How long, and how many, HTTP connections the server keeps (settings HEADWATER_HTTP_...)."""

    header_timeout: float = 10.0  # seconds for a request's line and headers to arrive
    idle_timeout: float = 75.0  # seconds a kept-alive connection may wait for its next request
    max_connections: int = 10_000  # open at once; past that, new ones are answered 503 and closed


class HttpServer:
    """A RestBridge listening on a socket (see `serve`)."""

    def __init__(self, server: web.Server, listening: asyncio.Server, port: int, connections: _Connections):
        self._server = server
        self._listening = listening
        self._connections = connections
        self.port = port

    async def stop(self, grace: float = 5.0) -> None:
        """Stops listening and closes idle connections; requests in flight (long-polls, say)
        get `grace` seconds to finish, then are cancelled."""
        self._listening.close()
        self._server.pre_shutdown()
        await self._server.shutdown(grace)
        await self._listening.wait_closed()
        self._connections.stop()


async def serve(bridge: RestBridge, sock: socket.socket, limits: ConnectionLimits = ConnectionLimits()) -> HttpServer:
    """Serves `bridge` on a bound socket, on the running loop."""
    loop = asyncio.get_running_loop()
    server = web.Server(bridge.handle)  # the request handler; the connections take their options below
    connections = _Connections(limits, loop)

    def connection() -> _Connection:
        # Bodies are read as they came: a raw route (the proxy) passes them on still compressed;
        # the RPC routes decode them themselves (`_decoded`), within the body limit.
        return _Connection(server, connections, loop=loop, keepalive_timeout=limits.idle_timeout, access_log=None,
                           auto_decompress=False)

    listening = await loop.create_server(connection, sock=sock, backlog=1024)
    return HttpServer(server, listening, sock.getsockname()[1], connections)


class _Connections:
    """The connections one server has open, against its limits, and the one timer that holds each
    to its head deadline: a connection notes when the head it waits for began (a float, on every
    request), and a sweep every SWEEP_SECONDS (at most a quarter of the deadline) answers 408 to
    those past it. A timer per request cost 2.6 us of each one's CPU."""

    __slots__ = ("limits", "members", "_loop", "_sweep")

    SWEEP_SECONDS = 1.0

    def __init__(self, limits: ConnectionLimits, loop: asyncio.AbstractEventLoop):
        self.limits = limits
        self.members: set[_Connection] = set()  # the connections open (not those refused)
        self._loop = loop
        self._sweep: asyncio.TimerHandle | None = None

    @property
    def open(self) -> int:
        return len(self.members)

    def add(self, connection: _Connection) -> None:
        self.members.add(connection)
        if self._sweep is None:
            self._sweep = self._loop.call_later(self._interval(), self._check)

    def discard(self, connection: _Connection) -> None:
        self.members.discard(connection)

    def stop(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None

    def _interval(self) -> float:
        return min(self.SWEEP_SECONDS, self.limits.header_timeout / 4)

    def _check(self) -> None:
        now = self._loop.time()
        timeout = self.limits.header_timeout
        for connection in [c for c in self.members if c.head_since is not None and now - c.head_since >= timeout]:
            connection.head_too_slow()
        self._sweep = self._loop.call_later(self._interval(), self._check) if self.members else None


class _Connection(RequestHandler):
    """aiohttp's connection handler with what it lacks: a deadline for each request's head (it
    has none, so one byte every few seconds held a connection for an hour), the connection cap,
    and answers to unparseable requests that do not quote them.

    The head's deadline runs from the connection's opening, then, on a kept-alive connection, from
    the first byte of each request (before that, the idle timeout holds: aiohttp's keep-alive);
    `_Connections` checks it."""

    __slots__ = ("_connections", "_refused", "head_since", "_head_begun")

    def __init__(self, manager: web.Server, connections: _Connections, **options):
        super().__init__(manager, **options)
        self._connections = connections
        self._refused = False
        self.head_since: float | None = None  # loop time the awaited head's deadline runs from
        self._head_begun = False  # bytes of the awaited request's head have arrived

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        limits = self._connections.limits
        if self._connections.open >= limits.max_connections:
            self._refuse(transport, limits.max_connections)
            return
        super().connection_made(transport)
        self.head_since = self._loop.time()
        self._connections.add(self)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Still waiting for a request, after these bytes: its head has begun and is not complete.
        waiting = self._waiter is not None and not self._waiter.done()
        if waiting:
            self._head_begun = True
            if self.head_since is None:
                self.head_since = self._loop.time()
        elif self.head_since is not None:
            self.head_since = None
            self._head_begun = False

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return
        self._connections.discard(self)
        self.head_since = None
        super().connection_lost(exc)

    def head_too_slow(self) -> None:
        self.head_since = None
        if self._head_begun and self.transport is not None:  # when nothing came, there is no one to tell
            seconds = self._connections.limits.header_timeout
            self.transport.write(_raw_answer(ApiError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"the request line and headers did not arrive within {seconds:g} s", http_status=408,
            )))
        self.force_close()

    def _refuse(self, transport: asyncio.BaseTransport, cap: int) -> None:
        """503 at once, then the connection is closed: at the client's EOF, or after a second
        (closing before its request is read would reset the connection and lose the 503)."""
        self._refused = self._force_close = True  # nothing it sends is parsed
        transport.write(_raw_answer(ApiError(
            grpc.StatusCode.UNAVAILABLE, f"the server has its {cap} connections open; retry shortly",
            headers={"Retry-After": "1"},
        )))
        transport.write_eof()
        self._loop.call_later(1.0, transport.close)

    def handle_error(self, request, status=500, exc=None, message=None) -> web.StreamResponse:
        if not isinstance(exc, http_exceptions.HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        # aiohttp's own answer (and log line) quotes the bytes it could not parse, which may hold
        # a token: ours says what was wrong, never the bytes.
        why = next((text for kind, text in _UNPARSEABLE if isinstance(exc, kind)), _NOT_HTTP)
        log.info("REST: refused a request from %s that is not valid HTTP (%s)", peer_of(self.transport), why)
        error = ApiError(grpc.StatusCode.INVALID_ARGUMENT, why)
        response = web.Response(status=400, body=json.dumps(error.to_json()).encode(), content_type="application/json")
        response.force_close()
        return response


# What is wrong with a request aiohttp cannot parse, by its exception (the most specific first).
_UNPARSEABLE = (
    (http_exceptions.LineTooLong, "the request line or a header is longer than the server accepts"),
    (http_exceptions.BadHttpMethod,
     "the request does not begin with an HTTP method (HTTPS sent to an HTTP port, perhaps)"),
    (http_exceptions.InvalidURLError, "the request target is not a valid URL path"),
    (http_exceptions.BadStatusLine, "the request line is not METHOD TARGET HTTP/1.x"),
    (http_exceptions.InvalidHeader, "a request header is malformed"),
)
_NOT_HTTP = "the request is not valid HTTP/1.x (a malformed header or body framing)"


def _raw_answer(error: ApiError) -> bytes:
    """A whole HTTP/1.1 answer of `error` that closes the connection, for the connection handler
    to write itself, outside aiohttp's request cycle."""
    body = json.dumps(error.to_json()).encode()
    status = error.http_status
    head = [f"HTTP/1.1 {status} {http_status.HTTPStatus(status).phrase}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Connection: close", *(f"{k}: {v}" for k, v in error.headers.items())]
    return "\r\n".join([*head, "", ""]).encode("latin-1") + body


class _ClientGone(Exception):
    """The client disconnected before we read the whole body: nobody to answer."""


class _StatusOverride(Exception):
    """An ApiError body with an HTTP status of its own (405, 413), not its code's."""

    def __init__(self, status: int, error: ApiError):
        super().__init__(error.message)
        self.status = status
        self.error = error


def _too_large(limit: int) -> _StatusOverride:  # 413 rather than RESOURCE_EXHAUSTED's 429
    error = ApiError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"the request body is larger than {limit} bytes")
    return _StatusOverride(413, error)


async def _read_body(http: web.BaseRequest, limit: int) -> bytes:
    """The body's bytes as they came (still in their Content-Encoding: a raw route passes them on)."""
    length = http.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    if not http.body_exists:
        return b""
    chunks, size = [], 0
    try:
        while chunk := await http.content.readany():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ConnectionError as exc:
        raise _ClientGone from exc
    return b"".join(chunks)


def _is_json(content_type: str) -> bool:
    """application/json, or a JSON-based type (application/problem+json, ...)."""
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def _decoded(body: bytes, content_encoding: str, limit: int) -> bytes:
    """`body` with its Content-Encoding undone: gzip (x-gzip), deflate (zlib or raw), identity, in
    the reverse of the order listed; never more than `limit` bytes (413), so a small compressed
    body cannot expand past the body limit. Another coding is refused (415).

        _decoded(gzip.compress(b"{}"), "gzip", 1024)  # b"{}"
    """
    for coding in reversed([c.strip().lower() for c in content_encoding.split(",") if c.strip()]):
        if coding == "identity":
            continue
        if coding in ("gzip", "x-gzip"):
            wbits = 16 + zlib.MAX_WBITS
        elif coding == "deflate":  # zlib's format, as HTTP means it; some clients send raw deflate
            zlib_header = len(body) >= 2 and body[0] & 0x0F == 8 and int.from_bytes(body[:2], "big") % 31 == 0
            wbits = zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS
        else:
            error = invalid("content-encoding", "must be gzip, deflate or identity")
            raise _StatusOverride(415, error)
        decompressor = zlib.decompressobj(wbits)
        try:
            decoded = decompressor.decompress(body, limit + 1)
        except zlib.error:
            raise invalid("body", f"is not {coding} data, as Content-Encoding says") from None
        if len(decoded) > limit:
            raise _too_large(limit)
        if not decompressor.eof or decompressor.unused_data:
            raise invalid("body", f"is not {coding} data, as Content-Encoding says: it is cut short or runs on")
        body = decoded
    return body


def _json_response(status: int, data: object, headers: dict[str, str] | None = None) -> RawResponse:
    body = json.dumps(data, ensure_ascii=False).encode()
    return RawResponse(status, [("content-type", "application/json"), *(headers or {}).items()], body)


def _error_response(error: ApiError, status: int | None = None) -> RawResponse:
    return _json_response(status or error.http_status, error.to_json(), error.headers)


async def _stream(http: web.BaseRequest, response: RawResponse) -> web.StreamResponse:
    """Sends a response whose body is an async iterator of bytes."""
    body = response.body
    answer = web.StreamResponse(status=response.status, headers=response.headers)
    try:
        await answer.prepare(http)
        async for chunk in body:
            await answer.write(bytes(chunk))
    except ConnectionError:
        raise
    except Exception:
        # The status is sent: all we can do is log and cut the response short (closing the
        # connection, so the client sees a truncated body, not a complete one).
        log.exception("REST response body stream failed")
        raise ConnectionResetError("the response body failed") from None
    finally:
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()
    await answer.write_eof()
    return answer
