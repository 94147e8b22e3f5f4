"""OpenTelemetry traces, off unless the standard OTEL_* variables turn them on.

    provider = tracing.configure()   # `headwater serve` does this once: None when traces are off
    ...
    provider.shutdown()              # exports the spans still queued

`configure` reads OTEL_TRACES_EXPORTER: unset or "none" (or OTEL_SDK_DISABLED=true) installs no
SDK provider, and then every helper below returns at its first line, so an untraced call pays a
function call per place that could make a span: less than the API's own no-op span (~4 us with
its context switch, which four times over would be a tenth of a proxied request's CPU).
"otlp" exports OTLP over HTTP (http/protobuf, to OTEL_EXPORTER_OTLP_ENDPOINT, default
http://localhost:4318), "console" prints spans to stdout. The SDK reads the rest itself:
OTEL_SERVICE_NAME (default "headwater"), OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER(_ARG),
OTEL_BSP_* (the batch processor), OTEL_EXPORTER_OTLP_(TRACES_)HEADERS, _TIMEOUT, _COMPRESSION.

The spans, one tree per call (README "Traces" lists their attributes):

    GET /v1/proxy/sync/{sync_id}/{path=**}     SERVER  the REST call (`rest_call`), or
    headwater.v1.ProxyService/Forward          SERVER  the gRPC call (`grpc_call`)
      store transaction                        CLIENT  one Store.run (`store_unit`)
      budget wait                              INTERNAL  the pacer's turn (`budget_wait`)
      GET                                      CLIENT  one attempt upstream (`upstream_request`)

    sync pass                                  INTERNAL  a collection worked from claim to release
      sync page                                INTERNAL  one page read and written
        store transaction, budget wait, GET    (as above)

Spans below a call or a pass are made only under a span being recorded: a call the sampler left
out (OTEL_TRACES_SAMPLER, or its caller's unsampled traceparent) costs one unrecorded span.
An incoming W3C `traceparent` (REST header or gRPC metadata) makes the call's span a child of the
caller's. Upstream, Headwater takes part in the trace only when the operator allows it
(HEADWATER_TRACE_PROPAGATE_UPSTREAM): then each attempt carries its own `traceparent`; otherwise
none goes out (a caller's own traceparent is the caller's trace, not the third party's business).
With traces off, Headwater is no hop of any trace and passes a caller's headers on untouched.

Attributes never hold a secret, a query string or a token: paths and URLs go without their query,
errors are named by their kind (`error.type`), never by their message.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from headwater.errors import ApiError
from headwater.settings import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = [
    "budget_wait",
    "configure",
    "enabled",
    "failed",
    "page_read",
    "grpc_answered",
    "grpc_call",
    "propagated",
    "rest_answered",
    "rest_call",
    "rest_route",
    "store_unit",
    "sync_page",
    "sync_pass",
    "upstream_answered",
    "upstream_request",
    "use",
    "working_on",
]

_tracer: trace.Tracer | None = None  # None: traces are off
_W3C = TraceContextTextMapPropagator()  # traceparent and tracestate, nothing else (no baggage)
TRACE_HEADERS = frozenset({"traceparent", "tracestate"})
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
EXPORTERS = ("otlp", "console")  # and "none"


def configure() -> TracerProvider | None:
    """The SDK's TracerProvider, built from the OTEL_* variables and installed as the global
    one, each exporter OTEL_TRACES_EXPORTER names ("otlp", "console", or both: "otlp,console")
    behind a batch processor; None (nothing installed) when traces are off. ConfigError names the
    variable at fault."""
    value = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    names = [name.strip() for name in value.split(",") if name.strip() and name.strip() != "none"]
    if not names or os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if unknown := [name for name in names if name not in EXPORTERS]:
        raise ConfigError(f"OTEL_TRACES_EXPORTER must name otlp, console or none, not {unknown[0]!r}")
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = os.environ.get(variable, "").strip()
        if protocol:
            if protocol != "http/protobuf":
                raise ConfigError(f"{variable} must be http/protobuf (Headwater exports OTLP over HTTP), not {protocol!r}")
            break

    # The SDK is imported only here: a process without traces neither loads nor runs it.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create({SERVICE_VERSION: _version()})
    if resource.attributes.get(SERVICE_NAME, "").startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "headwater"}))
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
    for name in dict.fromkeys(names):
        exporter = OTLPSpanExporter() if name == "otlp" else ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))  # OTEL_BSP_* from the environment
    trace.set_tracer_provider(provider)
    use(provider)
    return provider


def use(provider: TracerProvider | None) -> None:
    """Makes spans with `provider` (a TracerProvider), or makes none (None). `configure` calls it;
    tests call it with a provider of their own (an InMemorySpanExporter's) around a server."""
    global _tracer
    _tracer = None if provider is None else provider.get_tracer("headwater", _version())


def enabled() -> bool:
    return _tracer is not None


def _version() -> str:
    try:
        return metadata.version("headwater")
    except metadata.PackageNotFoundError:
        return "0"


# --- the calls: REST and gRPC ---------------------------------------------------------------------


def rest_call(method: str, path: str, headers: Mapping[str, str], transport):
    """The span of one REST call, for `with tracing.rest_call(...) as span`: in the caller's trace
    if `headers` carry a traceparent; `rest_route` and `rest_answered` complete it. `path`: the
    request's path, without its query; `transport`: the caller's connection (its address)."""
    if _tracer is None:
        return _OFF
    attributes = {"http.request.method": method, "url.path": path, "url.scheme": "http"}
    if method not in HTTP_METHODS:  # a made-up method names no span (the conventions' "_OTHER")
        attributes.update({"http.request.method": "_OTHER", "http.request.method_original": method})
        method = "HTTP"
    peer = transport.get_extra_info("peername") if transport is not None else None
    if peer:
        attributes["client.address"] = peer[0]
    return _span(method, SpanKind.SERVER, attributes, _W3C.extract(headers))


def rest_route(span: Span, method: str, template: str) -> None:
    """The route the call matched (its template, never the path's values, names the span)."""
    if span.is_recording():
        span.update_name(f"{method if method in HTTP_METHODS else 'HTTP'} {template}")
        span.set_attribute("http.route", template)


def rest_answered(span: Span, status: int) -> None:
    if span.is_recording():
        span.set_attribute("http.response.status_code", status)
        if status >= 500:  # a server span's 4xx is the caller's mistake, not an error of ours
            span.set_attribute("error.type", str(status))
            span.set_status(StatusCode.ERROR)


def grpc_call(full_method: str, metadata: Sequence[tuple[str, str | bytes]]):
    """The span of one gRPC call (`full_method`: "/headwater.v1.ProxyService/Forward"), the
    caller's trace continued from its metadata; `grpc_answered` gives its status."""
    if _tracer is None:
        return _OFF
    service, _, method = full_method.lstrip("/").partition("/")
    carrier = {key: value for key, value in metadata if key in TRACE_HEADERS and isinstance(value, str)}
    attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}
    return _span(f"{service}/{method}", SpanKind.SERVER, attributes, _W3C.extract(carrier))


# What a gRPC server's span counts as its own error (the semantic conventions' list).
_GRPC_SERVER_ERRORS = frozenset({"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"})


def grpc_answered(span: Span, code) -> None:
    """`code`: the call's grpc.StatusCode (None: OK)."""
    if span.is_recording():
        value, name = (0, "OK") if code is None else (code.value[0], code.name)
        span.set_attribute("rpc.grpc.status_code", value)
        if name in _GRPC_SERVER_ERRORS:
            span.set_attribute("error.type", name)
            span.set_status(StatusCode.ERROR)


# --- below the calls --------------------------------------------------------------------------------
#
# Made only under a span being recorded: a call the sampler left out costs no more below it, and the
# database's housekeeping outside any call or pass (a lease renewed every second) makes no trace.


def _under_recorded_span() -> bool:
    return _tracer is not None and trace.get_current_span().is_recording()


def store_unit(database_system: str, function) -> contextlib.AbstractContextManager[Span]:
    """The span of one unit of work (Store.run)."""
    if not _under_recorded_span():
        return _OFF
    attributes = {
        "db.system": database_system,  # as most backends read it; db.system.name is its newer name
        "db.system.name": database_system,
        "code.function.name": getattr(function, "__qualname__", type(function).__qualname__),
    }
    return _span("store transaction", SpanKind.CLIENT, attributes)


def budget_wait(slot, credential_id: str, share: str):
    """`slot` (a pacer's slot: an async context manager) with a span around the wait for it
    (`share`: "credential", or "background" for the part of the budget sync reads may use)."""
    if not _under_recorded_span():
        return slot
    return _WaitSpan(slot, {"headwater.credential.id": credential_id, "headwater.budget.share": share})


class _WaitSpan:
    """A slot whose entering (the wait for the turn) is a span; leaving it is the slot's own."""

    __slots__ = ("slot", "attributes")

    def __init__(self, slot, attributes: dict):
        self.slot = slot
        self.attributes = attributes

    async def __aenter__(self):
        with _span("budget wait", SpanKind.INTERNAL, self.attributes) as span:
            permit = await self.slot.__aenter__()
            span.set_attribute("headwater.budget.waited_ms", round(permit.waited * 1000, 1))
            return permit

    async def __aexit__(self, *exc_info):
        return await self.slot.__aexit__(*exc_info)


def upstream_request(method: str, url: str, provider: str, attempt: int):
    """The CLIENT span of one attempt of an upstream request; `url` goes without its query (where
    a query-parameter key would be) and without user information."""
    if not _under_recorded_span():
        return _OFF
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    attributes = {
        "http.request.method": method,
        "url.full": f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}",
        "server.address": parts.hostname or "",
        "server.port": port,
        "headwater.provider": provider,
    }
    if attempt > 1:
        attributes["http.request.resend_count"] = attempt - 1
    return _span(method, SpanKind.CLIENT, attributes)


def upstream_answered(span: Span, status: int, outcome: str) -> None:
    """The answer's status and what the classification made of it (success, pause, transient...)."""
    if span.is_recording():
        span.set_attribute("http.response.status_code", status)
        span.set_attribute("headwater.upstream.outcome", outcome)
        if status >= 400:
            span.set_attribute("error.type", str(status))
            span.set_status(StatusCode.ERROR)


def propagated(headers: list[tuple[str, str]], allowed: bool) -> list[tuple[str, str]]:
    """The headers of an attempt leaving now (inside its `upstream_request` span): with traces on,
    without the caller's traceparent and tracestate, and with this attempt's when `allowed`."""
    if _tracer is None:
        return headers
    kept = [(name, value) for name, value in headers if name.lower() not in TRACE_HEADERS]
    if allowed:
        carrier: dict[str, str] = {}
        _W3C.inject(carrier)
        kept.extend(carrier.items())
    return kept


def sync_pass(unit_id: int):
    """The span of the sync engine's work on one collection, from its claim to its release: a
    root, since the engine's work has no caller."""
    if _tracer is None:
        return _OFF
    return _span("sync pass", SpanKind.INTERNAL, {"headwater.sync.unit_id": unit_id})


def sync_page(sync_id: str, collection_id: str, listing: str):
    """The span of one page read and written, under its pass (`listing`: list, changes, deletions)."""
    if not _under_recorded_span():
        return _OFF
    attributes = {"headwater.sync.id": sync_id, "headwater.sync.collection": collection_id,
                  "headwater.sync.listing": listing}
    return _span("sync page", SpanKind.INTERNAL, attributes)


def working_on(pass_span: Span, sync_id: str, collection_id: str) -> None:
    """Which sync and collection the pass works on (known once its first page is loaded)."""
    if pass_span.is_recording():
        pass_span.set_attributes({"headwater.sync.id": sync_id, "headwater.sync.collection": collection_id})


def page_read(span: Span, records: int) -> None:
    if span.is_recording():
        span.set_attribute("headwater.sync.records", records)


def failed(span: Span, error_type: str) -> None:
    """Marks `span` an error of kind `error_type` (a sync page's health: degraded, error)."""
    if span.is_recording():
        span.set_attribute("error.type", error_type)
        span.set_status(StatusCode.ERROR)


# --- making spans -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _span(name: str, kind: SpanKind, attributes: dict, parent=None) -> Iterator[Span]:
    """A span, current while the block runs (in `parent`'s trace, if given). An exception marks it
    an error named by its kind (an ApiError's gRPC code, else the exception's class), never by its
    message, which may quote the caller's input."""
    span = _tracer.start_span(name, context=parent, kind=kind, attributes=attributes)
    token = otel_context.attach(trace.set_span_in_context(span, parent))
    try:
        yield span
    except BaseException as exc:
        if not isinstance(exc, grpc.aio.AbortError):  # a gRPC call's status is grpc_answered's to say
            span.set_attribute("error.type", exc.code.name if isinstance(exc, ApiError) else type(exc).__qualname__)
            span.set_status(StatusCode.ERROR)
        raise
    finally:
        otel_context.detach(token)
        span.end()


class _Off:
    """What a span helper gives when traces are off: a `with` that does nothing, whose span is
    the API's invalid span (its setters do nothing)."""

    __slots__ = ()

    def __enter__(self) -> Span:
        return INVALID_SPAN

    def __exit__(self, *exc_info) -> None:
        return None


_OFF = _Off()
