"""One asyncio process: the gRPC server and the REST bridge (on aiohttp's HTTP server) on one event loop.

    server = await Server.start(settings)       # binds both; port 0 picks a free one
    print(server.grpc_port, server.http_port)
    await server.stop()

Both fronts call the same servicer objects: gRPC through grpc.aio, REST through the bridge,
which builds the request message from JSON and calls the servicer in-process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import hmac
import logging
import socket
from collections.abc import Awaitable

import grpc
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from headwater import tracing
from headwater.auth import Auth
from headwater.crypto import SecretBox
from headwater.engine.delivery import WebhookDelivery
from headwater.engine.retention import Pruner
from headwater.engine.sync import SyncEngine
from headwater.errors import ApiError, invalid, raise_if_invalid
from headwater.inputs import request_violations
from headwater.metrics import Metrics
from headwater.rest import (
    ConnectionLimits,
    HttpServer,
    JsonAnswer,
    RawRequest,
    RawResponse,
    RawRoute,
    RestBridge,
    Route,
    RouteTable,
    build_app,
    compile_template,
    serve,
)
from headwater.rest.openapi import RawDoc, describe
from headwater.services import Backend, raw_routes, servicers
from headwater.services.consumers import ConsumerServicer
from headwater.settings import Settings
from headwater.store import Store
from headwater.store.notify import AckWaiter, Listener
from headwater.upstream.accounts import Accounts
from headwater.upstream.catalogue import ProviderCatalogue
from headwater.upstream.connected_users import ConnectedUsers
from headwater.upstream.forwarder import Forwarder
from headwater.upstream.gateway import Upstream
from headwater.upstream.oauth import TokenRefresher
from headwater.upstream.oauth_apps import OAuthApps
from headwater.upstream.budget import make_pacer

log = logging.getLogger("headwater.server")


class _HandlerWrapper(grpc.aio.ServerInterceptor):
    """An interceptor that wraps each method's handler (`_wrap`), once per method: a method's
    handler never changes, so it is not wrapped again on every call."""

    def __init__(self) -> None:
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}  # method name -> its wrapped handler

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = await continuation(handler_call_details)
            if handler is None:
                return handler
            wrapped = self._wrapped[method] = self._wrap(handler, method)
        return wrapped

    @staticmethod
    def _wrap(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        raise NotImplementedError


class ApiErrorInterceptor(_HandlerWrapper):
    """Checks every request before its servicer and turns ApiError into a gRPC status with
    google.rpc.Status details; hides other crashes.

    Wraps unary-unary and unary-stream handlers (a server stream can fail before or between its
    messages; the status ends the stream the same way). A request that does not decode (not
    protobuf, invalid UTF-8 in a string, nested past protobuf's limit) or breaks the rules of
    `headwater.inputs` answers INVALID_ARGUMENT, as over REST."""

    @staticmethod
    def _wrap(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        deserialize = _tolerant(handler.request_deserializer)
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request, context):
                try:
                    _check(request)
                    response = await inner(request, context)
                    return response.message() if isinstance(response, JsonAnswer) else response
                except Exception as exc:
                    await _abort(context, exc, method)

            return grpc.unary_unary_rpc_method_handler(
                unary, request_deserializer=deserialize, response_serializer=handler.response_serializer
            )
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            async def stream(request, context):
                try:
                    _check(request)
                    async for response in inner_stream(request, context):
                        yield response
                except Exception as exc:
                    await _abort(context, exc, method)

            return grpc.unary_stream_rpc_method_handler(
                stream, request_deserializer=deserialize, response_serializer=handler.response_serializer
            )
        return handler


class TracingInterceptor(_HandlerWrapper):
    """One span per gRPC call (headwater.tracing.grpc_call), in the caller's trace if its metadata
    carries a traceparent, with the call's status. Installed only when traces are on.

    Outermost, so its span holds the ApiErrorInterceptor's checks and the status it gives."""

    @staticmethod
    def _wrap(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request, context):
                with tracing.grpc_call(method, context.invocation_metadata()) as span:
                    try:
                        return await inner(request, context)
                    finally:
                        tracing.grpc_answered(span, context.code())

            return grpc.unary_unary_rpc_method_handler(
                unary, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            async def stream(request, context):
                with tracing.grpc_call(method, context.invocation_metadata()) as span:
                    try:
                        async for response in inner_stream(request, context):
                            yield response
                    finally:
                        tracing.grpc_answered(span, context.code())

            return grpc.unary_stream_rpc_method_handler(
                stream, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


class _Undecodable:
    """What the request deserializer gives for bytes that are not the method's request message
    (grpc.aio would answer UNKNOWN, naming protobuf's exception, if the deserializer raised)."""

    def __init__(self, type_name: str):
        self.type_name = type_name


def _tolerant(deserializer):
    """`deserializer` (a message class's FromString), giving _Undecodable rather than raising."""
    if deserializer is None:
        return None
    message_class = getattr(deserializer, "__self__", None)
    undecodable = _Undecodable(message_class.DESCRIPTOR.full_name if message_class else "request message")

    def deserialize(data: bytes):
        try:
            return deserializer(data)
        except (DecodeError, UnicodeDecodeError, RecursionError):
            return undecodable

    return deserialize


def _check(request) -> None:
    """The request as `headwater.inputs` wants it, or INVALID_ARGUMENT."""
    if isinstance(request, _Undecodable):
        raise invalid(
            "request", f"is not a {request.type_name} in protobuf's binary form (or nests deeper than 100 levels)"
        )
    if isinstance(request, Message):
        raise_if_invalid(request_violations(request))


async def _abort(context, exc: Exception, method: str) -> None:
    if isinstance(exc, grpc.aio.AbortError):  # the servicer aborted the call itself
        raise exc
    if isinstance(exc, ApiError):
        error = exc
    else:
        log.error("unhandled error in %s", method, exc_info=exc)
        error = ApiError(grpc.StatusCode.INTERNAL, "internal error")
    message = error.message.encode()[:MAX_GRPC_MESSAGE_BYTES].decode(errors="ignore")
    await context.abort(error.code, message, trailing_metadata=grpc_trailers(error))


# gRPC clients refuse trailers past 8 KiB (and drop the stream past 16 KiB): the message (sent
# percent-encoded, up to 3 bytes a byte) and the status details (sent in base64) stay well below.
MAX_GRPC_MESSAGE_BYTES = 1024
MAX_GRPC_STATUS_BYTES = 2048


def grpc_trailers(error: ApiError) -> tuple[tuple[str, str | bytes], ...]:
    extra = tuple((k.lower(), v) for k, v in error.headers.items())
    status = error.to_status(max_bytes=MAX_GRPC_STATUS_BYTES)
    return (("grpc-status-details-bin", status.SerializeToString()), *extra)


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class CannotListen(Exception):
    """A listen address cannot be bound (taken by another `headwater serve`, say): one line says so.

        CannotListen("REST", "127.0.0.1:8080", "address already in use")
    """

    def __init__(self, front: str, address: str, reason: str):
        super().__init__(f"cannot listen for {front} on {address}: {reason}")


def bound_socket(front: str, address: str) -> socket.socket:
    """A TCP socket bound to `address` ("host:port"; port 0 picks a free one), not yet listening.
    CannotListen if the address is taken or not ours to bind."""
    host, port = _split_address(address)
    # IPPROTO_TCP, not 0: accepted sockets inherit it, and asyncio sets TCP_NODELAY only on
    # sockets that say TCP (without it every answer waited ~40 ms for a delayed ACK).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free; a listening one is not
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CannotListen(front, address, (exc.strerror or str(exc)).lower()) from None
    return sock


def _bind_grpc(grpc_server, address: str) -> int:
    """Binds the gRPC server's port (SO_REUSEPORT is off: see its options). CannotListen if taken."""
    try:
        return grpc_server.add_insecure_port(address)
    except RuntimeError:  # gRPC says only "Failed to bind to address"
        raise CannotListen("gRPC", address, "gRPC could not bind it") from None


class Server:
    def __init__(self, backend: Backend, grpc_server, http_server: HttpServer, grpc_port, http_port):
        self.backend = backend
        self.store = backend.store
        self.grpc_server = grpc_server
        self.http_server = http_server
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.consumers: ConsumerServicer | None = None  # its long-polls answer at once on stop
        self.first_token: str | None = None
        self.engine: SyncEngine | None = None
        self.listener: Listener | None = None  # other processes' consumer announcements (PostgreSQL)
        self.webhooks: WebhookDelivery | None = None
        self.metrics_server: HttpServer | None = None  # GET /metrics on HEADWATER_METRICS_ADDRESS
        self.metrics_port = http_port  # where GET /metrics answers
        self.loop_watch: asyncio.Task | None = None  # measures the event loop's lag (headwater.metrics)
        self.pruner: Pruner | None = None  # keeps streams within their retention

    @classmethod
    async def start(cls, settings: Settings, inherited: list[socket.socket] | None = None) -> Server:
        """Binds both addresses, migrates the database and serves. A taken address raises
        CannotListen before the database is touched.

        `inherited`: the REST socket (and the metrics one, if `settings.metrics_address`) bound and
        listening already, by the parent of a worker (headwater.workers), which also checked the
        gRPC address; they are served as they are, not bound again."""
        sockets = list(inherited or [])
        try:
            if inherited is None:
                sockets.append(bound_socket("REST", settings.http_address))
                if settings.metrics_address is not None:
                    sockets.append(bound_socket("metrics", settings.metrics_address))
                if _split_address(settings.grpc_address)[1]:
                    # Tried with a socket of ours first: gRPC's own failure also logs a line of its own.
                    bound_socket("gRPC", settings.grpc_address).close()
            store = Store.open(settings.database_url)  # shared with any other server of this process
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        try:
            return await cls._start(settings, store, *sockets)
        except BaseException:
            for sock in sockets:
                sock.close()
            await store.close()
            raise

    @classmethod
    async def _start(cls, settings: Settings, store: Store, http_socket: socket.socket,
                     metrics_socket: socket.socket | None = None) -> Server:
        catalogue = ProviderCatalogue.default()  # checked as it is read: a bad entry stops us here
        await store.migrate()
        box = SecretBox(settings.secret_key)
        oauth_apps = OAuthApps(box, catalogue, settings.oauth_apps)  # checked against the catalogue here
        accounts = Accounts(store, box, catalogue, oauth_apps)
        # The catalogue decides what is secret, and migrations run without the key: rows holding a
        # secret in the clear (written before it was one) are encrypted here, before any call.
        sealed = await accounts.seal_stored_secrets()
        if sealed:
            log.info("encrypted the secrets of %d credential(s) stored in the clear", sealed)
        forwarder = Forwarder(
            allow_private_networks=settings.allow_private_networks,
            max_response_bytes=settings.max_response_bytes,
        )
        metrics = Metrics(per_credential=settings.metrics_per_credential)
        backend = Backend(
            store=store,
            auth=Auth(store),
            catalogue=catalogue,
            box=box,
            accounts=accounts,
            oauth_apps=oauth_apps,
            connected_users=ConnectedUsers(store, accounts),
            upstream=Upstream(
                forwarder,
                make_pacer(settings.redis_url, settings.pacing_margin),
                TokenRefresher(store, box, accounts, forwarder, settings.refused_refresh_retry_seconds),
                metrics,
                propagate_trace=settings.trace_propagate_upstream,
            ),
            acks=AckWaiter(store),
            metrics=metrics,
        )
        # The connect page's links and OAuth callback name the REST address bound in `start` (port
        # 0 resolved), unless HEADWATER_PUBLIC_URL says how browsers reach us.
        host, port = http_socket.getsockname()[:2]
        settings = dataclasses.replace(settings, http_address=f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        services = servicers(backend, settings)

        # gRPC, with reflection and the standard health service.
        message_limit = settings.max_request_bytes + 64 * 1024  # the body plus the request's fields
        interceptors = [TracingInterceptor()] if tracing.enabled() else []
        grpc_server = grpc.aio.server(
            interceptors=[*interceptors, ApiErrorInterceptor()],
            options=[
                ("grpc.max_receive_message_length", message_limit),
                ("grpc.max_send_message_length", settings.max_response_bytes + 64 * 1024),
                # gRPC's default lets a second server bind the same address and take part of its
                # calls (answering them from its own database): a taken address must fail instead.
                ("grpc.so_reuseport", 0),
            ],
        )
        for descriptor, servicer, add in services:
            add(servicer, grpc_server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)
        names = [d.full_name for d, _, _ in services]
        reflection.enable_server_reflection(
            [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            grpc_server,
        )
        grpc_port = _bind_grpc(grpc_server, settings.grpc_address)
        await grpc_server.start()
        try:
            for name in ["", *names]:
                await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

            # REST, on the same loop, from the socket bound in `start` (so port 0 works and is known);
            # GET /metrics beside the API, or on an address of its own.
            scrape = metrics_route(metrics, store, backend.upstream.pacer, settings.metrics_token)
            bridge = build_app(
                [(d, s) for d, s, _ in services],
                raw_routes=[*raw_routes(services, settings), *([scrape] if metrics_socket is None else [])],
                max_body_bytes=settings.max_request_bytes,
            )
            limits = ConnectionLimits(settings.http_header_timeout, settings.http_idle_timeout,
                                      settings.http_max_connections)
            http_server = await serve(bridge, http_socket, limits)
            metrics_server = None
            if metrics_socket is not None:
                only_metrics = RouteTable()
                only_metrics.add(Route(frozenset(scrape[0]), compile_template(scrape[1]), scrape[2]))
                try:
                    metrics_server = await serve(RestBridge(only_metrics), metrics_socket, limits)
                except BaseException:
                    await http_server.stop(0)
                    raise
        except BaseException:
            await grpc_server.stop(None)
            raise
        server = cls(backend, grpc_server, http_server, grpc_port, http_server.port)
        server.metrics_server = metrics_server
        server.metrics_port = (metrics_server or http_server).port
        server.loop_watch = asyncio.create_task(metrics.watch_event_loop(), name="headwater-event-loop-lag")
        server.consumers = next(s for _, s, _ in services if isinstance(s, ConsumerServicer))
        server.listener = await Listener.start(store)
        server.webhooks = WebhookDelivery(
            store, box, forwarder, settings.webhook_retry_seconds, settings.webhook_retry_max_seconds, metrics
        )
        server.webhooks.start()
        server.pruner = Pruner(store, settings.retention_interval, settings.retention_batch)
        server.pruner.start()
        if settings.sync_engine:
            server.engine = SyncEngine(backend, settings)
            server.engine.start()
        return server

    async def stop(self, grace: float = 5.0) -> None:
        """Stops taking new calls, answers waiting long-polls at once (their empty batch), lets
        other calls in flight finish (up to `grace` s), closes the store.

        Every step is bounded (STOP_STEP_SECONDS, the fronts' past the grace): one that hangs is
        abandoned with a warning naming it, so stopping always ends."""
        if self.consumers is not None:
            self.consumers.stop()
        fronts = [self.grpc_server.stop(grace), self.http_server.stop(grace)]
        if self.metrics_server is not None:
            fronts.append(self.metrics_server.stop(grace))
        await _bounded("the gRPC and REST servers", grace + STOP_STEP_SECONDS,
                       asyncio.gather(*fronts, return_exceptions=True))
        if self.loop_watch is not None:
            self.loop_watch.cancel()
        if self.engine is not None:
            await _bounded("the sync engine", STOP_STEP_SECONDS, self.engine.stop())
        if self.pruner is not None:
            await _bounded("the stream pruner", STOP_STEP_SECONDS, self.pruner.stop())
        if self.webhooks is not None:
            await _bounded("webhook delivery", STOP_STEP_SECONDS, self.webhooks.stop())
        if self.listener is not None:
            await _bounded("the PostgreSQL listener", STOP_STEP_SECONDS, self.listener.stop())
        await _bounded("the upstream forwarder", STOP_STEP_SECONDS, self.backend.upstream.forwarder.aclose())
        await _bounded("the pacer", STOP_STEP_SECONDS, self.backend.upstream.pacer.aclose())
        await _bounded("the store", STOP_STEP_SECONDS, self.store.close())


def settle_garbage_collector() -> None:
    """Tunes the garbage collector for serving, once a server has started (`headwater serve` and
    each of its workers)."""
    # What is loaded by now lives as long as the process: keep it out of the garbage collector's
    # full passes, which otherwise walk it all and stall every call for ~50-90 ms (the proxy's p99).
    gc.freeze()
    # And collect the young generation after 20,000 allocations rather than 700: a request's
    # objects are then mostly freed (by reference counting) before a collection walks them, which
    # saves ~7% of a proxied request's CPU (BENCHMARKS.md); the cost is at most that many objects
    # of cyclic garbage waiting a little longer.
    gc.set_threshold(20_000, 10, 10)


def metrics_route(metrics: Metrics, store: Store, pacer, token: str | None) -> RawRoute:
    """`GET /metrics` (headwater.metrics): no API token (scrapers have none), but with
    HEADWATER_METRICS_TOKEN set, `Authorization: Bearer <that token>`."""
    expected = f"Bearer {token}".encode() if token else None

    async def handle(http: RawRequest) -> RawResponse:
        headers = dict(http.headers)
        if expected is not None and not hmac.compare_digest(headers.get("authorization", "").encode(), expected):
            raise ApiError(grpc.StatusCode.UNAUTHENTICATED, "GET /metrics needs Authorization: Bearer "
                           "<the HEADWATER_METRICS_TOKEN of this server>", headers={"WWW-Authenticate": "Bearer"})
        body, content_type = await metrics.scrape(store, pacer, headers.get("accept"))
        return RawResponse(200, [("content-type", content_type)], body)

    doc = RawDoc("Prometheus metrics in the text exposition format (OpenMetrics if the Accept header asks "
                 "for it): no API token; `Authorization: Bearer <HEADWATER_METRICS_TOKEN>` when the server "
                 "sets one.", tag="Meta", authenticated=False, media_type="text/plain")
    return (("GET",), METRICS_PATH, describe(handle, doc))


METRICS_PATH = "/metrics"
STOP_STEP_SECONDS = 6.0  # the longest one step of Server.stop may take (the fronts: past their grace)


async def _bounded(what: str, seconds: float, step: Awaitable) -> None:
    """Awaits one step of stopping for at most `seconds`; past that it is cancelled and left with
    a warning naming it, so that a step that hangs cannot hold the process (or a test) for ever."""
    try:
        async with asyncio.timeout(seconds) as limit:
            await step
    except TimeoutError:
        if not limit.expired():
            raise
        log.warning("stopping: %s did not finish within %g s; going on without it", what, seconds)
