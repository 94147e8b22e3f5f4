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
import logging
import socket

import grpc
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from headwater.auth import Auth
from headwater.crypto import SecretBox
from headwater.engine.delivery import WebhookDelivery
from headwater.engine.sync import SyncEngine
from headwater.errors import ApiError, invalid, raise_if_invalid
from headwater.inputs import request_violations
from headwater.rest import HttpServer, build_app, serve
from headwater.services import Backend, raw_routes, servicers
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
from headwater.upstream.pacer import make_pacer

log = logging.getLogger("headwater.server")


class ApiErrorInterceptor(grpc.aio.ServerInterceptor):
    """Checks every request before its servicer and turns ApiError into a gRPC status with
    google.rpc.Status details; hides other crashes.

    Wraps unary-unary and unary-stream handlers (a server stream can fail before or between its
    messages; the status ends the stream the same way). A request that does not decode (not
    protobuf, invalid UTF-8 in a string, nested past protobuf's limit) or breaks the rules of
    `headwater.inputs` answers INVALID_ARGUMENT, as over REST."""

    def __init__(self) -> None:
        # method name -> its wrapped handler: a method's handler never changes, so it is wrapped
        # once rather than on every call.
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

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
        deserialize = _tolerant(handler.request_deserializer)
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request, context):
                try:
                    _check(request)
                    return await inner(request, context)
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


class Server:
    def __init__(self, backend: Backend, grpc_server, http_server: HttpServer, grpc_port, http_port):
        self.backend = backend
        self.store = backend.store
        self.grpc_server = grpc_server
        self.http_server = http_server
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.first_token: str | None = None
        self.engine: SyncEngine | None = None
        self.listener: Listener | None = None  # other processes' consumer announcements (PostgreSQL)
        self.webhooks: WebhookDelivery | None = None

    @classmethod
    async def start(cls, settings: Settings) -> Server:
        store = Store.open(settings.database_url)  # shared with any other server of this process
        try:
            return await cls._start(settings, store)
        except BaseException:
            await store.close()
            raise

    @classmethod
    async def _start(cls, settings: Settings, store: Store) -> Server:
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
            ),
            acks=AckWaiter(store),
        )
        # The REST socket is bound first, so port 0 works and is known: the connect page's links
        # and OAuth callback name it unless HEADWATER_PUBLIC_URL says how browsers reach us.
        host, port = _split_address(settings.http_address)
        # IPPROTO_TCP, not 0: accepted sockets inherit it, and asyncio sets TCP_NODELAY only on
        # sockets that say TCP (without it every answer waited ~40 ms for a delayed ACK).
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        bound = f"[{host}]" if ":" in host else host
        settings = dataclasses.replace(settings, http_address=f"{bound}:{sock.getsockname()[1]}")
        services = servicers(backend, settings)

        # gRPC, with reflection and the standard health service.
        message_limit = settings.max_request_bytes + 64 * 1024  # the body plus the request's fields
        grpc_server = grpc.aio.server(
            interceptors=[ApiErrorInterceptor()],
            options=[
                ("grpc.max_receive_message_length", message_limit),
                ("grpc.max_send_message_length", settings.max_response_bytes + 64 * 1024),
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
        grpc_port = grpc_server.add_insecure_port(settings.grpc_address)
        await grpc_server.start()
        for name in ["", *names]:
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

        # REST, on the same loop, on the socket bound above.
        bridge = build_app(
            [(d, s) for d, s, _ in services],
            raw_routes=raw_routes(services),
            max_body_bytes=settings.max_request_bytes,
        )
        http_server = await serve(bridge, sock)
        server = cls(backend, grpc_server, http_server, grpc_port, http_server.port)
        server.listener = await Listener.start(store)
        server.webhooks = WebhookDelivery(
            store, box, forwarder, settings.webhook_retry_seconds, settings.webhook_retry_max_seconds
        )
        server.webhooks.start()
        if settings.sync_engine:
            server.engine = SyncEngine(backend, settings)
            server.engine.start()
        return server

    async def stop(self, grace: float = 5.0) -> None:
        """Stops taking new calls, lets calls in flight finish (up to `grace` s), closes the store."""
        await asyncio.gather(self.grpc_server.stop(grace), self.http_server.stop(grace), return_exceptions=True)
        if self.engine is not None:
            await self.engine.stop()
        if self.webhooks is not None:
            await self.webhooks.stop()
        if self.listener is not None:
            await self.listener.stop()
        await self.backend.upstream.forwarder.aclose()
        await self.backend.upstream.pacer.aclose()
        await self.store.close()
