"""The REST bridge: JSON transcoding of the services' `google.api.http` routes, served over HTTP.

    from headwater.rest import build_app, serve
    from headwater.v1 import sync_pb2

    bridge = build_app([(sync_pb2.DESCRIPTOR.services_by_name["SyncService"], SyncServicer(...))])
    http = await serve(bridge, sock)    # ... await http.stop(grace=5)

`_routing` compiles path templates and picks a route, `_transcode` converts JSON <-> messages,
`_context` is the servicer context of a REST call, `_app` is the HTTP server tying them together.
"""

from ._app import (
    MAX_BODY_BYTES,
    ConnectionLimits,
    HttpServer,
    RawHandler,
    RawRequest,
    RawResponse,
    RawRoute,
    RestBridge,
    build_app,
    serve,
)
from ._context import DEFAULT_TIMEOUT, RestContext
from ._routing import ANY_METHOD, DuplicateRouteError, Match, PathTemplate, Route, RouteTable, compile_template
from ._transcode import JsonAnswer, integral_numbers, message_json

__all__ = [
    "ANY_METHOD",
    "ConnectionLimits",
    "DEFAULT_TIMEOUT",
    "DuplicateRouteError",
    "HttpServer",
    "JsonAnswer",
    "MAX_BODY_BYTES",
    "Match",
    "PathTemplate",
    "RawHandler",
    "RawRequest",
    "RawResponse",
    "RawRoute",
    "RestBridge",
    "RestContext",
    "Route",
    "RouteTable",
    "build_app",
    "compile_template",
    "integral_numbers",
    "message_json",
    "serve",
]
