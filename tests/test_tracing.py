"""Traces (headwater.tracing): the tree of spans a call makes, as an exporter receives it.

In-process servers export to the SDK's InMemorySpanExporter (`tracing.use`, as `configure` does
with the OTLP exporter); `headwater serve` itself is run against a loopback OTLP/HTTP collector to
show traces are off by default and exported when OTEL_TRACES_EXPORTER says so.
"""

from __future__ import annotations

import asyncio
import signal
import uuid

import grpc
import httpx
import pytest
from cryptography.fernet import Fernet
from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from conftest import Running, _client_for, _close_client, finish, settings_for
from emulators import read_request, serve_on_loopback
from headwater import tracing
from headwater.server import Server
from headwater.settings import ConfigError
from headwater.v1 import mutation_pb2, sync_pb2
from headwater_process import Headwater
from sync_support import FAST_ENGINE, backfilled, create_sync, eventually
from test_proxy import SECRET, socket_port_closed, stripe_sync

PROXY_ROUTE = "GET /v1/proxy/sync/{sync_id}/{path=**}"
# A caller's W3C trace context: trace id, then its span's id (the parent of ours).
CALLER_TRACE, CALLER_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
CALLER_TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


@pytest.fixture
def spans():
    """Traces on for the servers started in the test, into memory; off again after it."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    yield exporter
    tracing.use(None)
    provider.shutdown()


@pytest.fixture
async def traced(spans, tmp_path):
    """Starts a server on SQLite with traces on (settings overrides as keywords), and a client."""
    started = []

    async def start(**overrides):
        settings = settings_for(f"sqlite:///{tmp_path / uuid.uuid4().hex}.db", **overrides)
        running = Running(await Server.start(settings), settings)
        client = await _client_for(running, f"acme-{uuid.uuid4().hex[:6]}")
        started.append((running, client))
        return running, client

    yield start
    for running, client in started:
        await _close_client(client)
        await finish("stopping the server", running.server.stop(grace=1))


def tree(finished, root) -> list:
    """`root` and the spans below it as nested [name, [children...]], each level by start time."""
    below = sorted((s for s in finished if s.parent is not None and s.parent.span_id == root.context.span_id),
                   key=lambda s: s.start_time)
    return [root.name, [tree(finished, child) for child in below]]


def roots(finished, name: str) -> list:
    return [s for s in finished if s.name == name and (s.parent is None or s.parent.is_remote)]


def children(finished, parent, name: str) -> list:
    return [s for s in finished if s.name == name and s.parent is not None and s.parent.span_id == parent.context.span_id]


async def test_a_proxied_request_is_a_rest_span_with_its_budget_wait_and_upstream_request(traced, spans, upstream):
    _, client = await traced()
    sync = await stripe_sync(client, upstream.base_url)
    spans.clear()

    response = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/echo/v1/customers", params={"email": "a@b.org"})

    assert response.status_code == 200, response.text
    finished = spans.get_finished_spans()
    [call] = roots(finished, PROXY_ROUTE)
    names = [name for name, _ in tree(finished, call)[1]]
    assert names[-2:] == ["budget wait", "GET"], names  # after the store's units that found the credential
    assert set(names[:-2]) <= {"store transaction"}
    assert call.kind is SpanKind.SERVER
    assert call.attributes["http.request.method"] == "GET"
    assert call.attributes["http.route"] == "/v1/proxy/sync/{sync_id}/{path=**}"
    assert call.attributes["url.path"] == f"/v1/proxy/sync/{sync['id']}/echo/v1/customers"
    assert call.attributes["http.response.status_code"] == 200
    [wait] = children(finished, call, "budget wait")
    assert wait.attributes["headwater.credential.id"] == sync["credential_id"]
    assert wait.attributes["headwater.budget.share"] == "credential"
    [sent] = children(finished, call, "GET")
    assert sent.kind is SpanKind.CLIENT
    assert sent.attributes["http.response.status_code"] == 200
    assert sent.attributes["url.full"] == f"{upstream.base_url}/echo/v1/customers"
    assert sent.attributes["server.address"] == "127.0.0.1" and sent.attributes["server.port"] == upstream.port
    assert sent.attributes["headwater.provider"] == "stripe"
    assert sent.attributes["headwater.upstream.outcome"] == "success"
    assert wait.end_time <= sent.start_time
    # No attribute of any span holds the credential's secret, the API token or the query string.
    values = [str(v) for s in finished for v in s.attributes.values()]
    assert not [v for v in values if SECRET in v or client.token in v or "a%40b.org" in v or "email" in v]


async def test_an_upstream_error_status_marks_its_span_and_a_retry_counts_as_a_resend(traced, spans, upstream):
    _, client = await traced()
    sync = await stripe_sync(client, upstream.base_url)
    spans.clear()

    response = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/status/503", params={"times": "1"})

    assert response.status_code == 200, response.text  # a GET is safe to repeat: the second answer is 200
    finished = spans.get_finished_spans()
    [call] = roots(finished, PROXY_ROUTE)
    first, second = sorted(children(finished, call, "GET"), key=lambda s: s.start_time)
    assert first.attributes["http.response.status_code"] == 503
    assert first.attributes["error.type"] == "503" and first.status.status_code is StatusCode.ERROR
    assert first.attributes["headwater.upstream.outcome"] == "retry"
    assert second.attributes["http.response.status_code"] == 200
    assert second.attributes["http.request.resend_count"] == 1
    assert call.status.status_code is StatusCode.UNSET


async def test_an_unreachable_upstream_is_an_error_on_the_attempt_and_on_the_call(traced, spans):
    _, client = await traced()
    sync = await stripe_sync(client, f"http://127.0.0.1:{socket_port_closed()}")
    spans.clear()

    response = await client.rest.post(f"/v1/proxy/sync/{sync['id']}/v1/customers")

    assert response.status_code == 502, response.text  # a POST is not repeated
    finished = spans.get_finished_spans()
    [call] = roots(finished, "POST /v1/proxy/sync/{sync_id}/{path=**}")
    assert call.attributes["http.response.status_code"] == 502
    assert call.attributes["error.type"] == "502" and call.status.status_code is StatusCode.ERROR
    [attempt] = children(finished, call, "POST")
    assert attempt.attributes["error.type"] == "UpstreamConnectError"
    assert "http.response.status_code" not in attempt.attributes


async def test_a_budget_wait_past_the_deadline_is_an_error_on_its_span(traced, spans, upstream):
    _, client = await traced()
    sync = await stripe_sync(client, upstream.base_url, rate_limit={"allowed_requests": 1, "interval": 60})
    first = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/echo/first")
    assert first.status_code == 200, first.text
    spans.clear()

    refused = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/echo/second", headers={"x-headwater-timeout": "1"})

    assert refused.status_code == 429, refused.text
    finished = spans.get_finished_spans()
    [call] = roots(finished, PROXY_ROUTE)
    [wait] = children(finished, call, "budget wait")
    assert wait.attributes["error.type"] == "BudgetExhausted" and wait.status.status_code is StatusCode.ERROR
    assert children(finished, call, "GET") == []  # nothing was sent
    assert call.attributes["http.response.status_code"] == 429 and call.status.status_code is StatusCode.UNSET


async def test_a_mutation_over_grpc_is_its_call_with_store_transactions_and_the_upstream_write(
        traced, spans, fake_provider):
    _, client = await traced()
    stripe = await fake_provider("stripe")
    sync = await create_sync(client, stripe, "stripe:customer")
    request = mutation_pb2.RunMutationRequest(kind="create", sync_id=sync["id"], collection_id="stripe:customer")
    json_format.ParseDict({"data": {"email": "leto@arrakis.org"}}, request.records.add())
    spans.clear()

    answer = await client.mutations.RunMutation(request, metadata=client.metadata)

    finished = spans.get_finished_spans()
    [call] = roots(finished, "headwater.v1.MutationService/RunMutation")
    assert call.kind is SpanKind.SERVER
    assert (call.attributes["rpc.system"], call.attributes["rpc.service"], call.attributes["rpc.method"]) == (
        "grpc", "headwater.v1.MutationService", "RunMutation")
    assert call.attributes["rpc.grpc.status_code"] == 0
    names = [name for name, _ in tree(finished, call)[1]]
    # The credential and the mutation's bookkeeping are read and written before the write goes
    # upstream, and the record it made is written after.
    assert "store transaction" in names[: names.index("POST")], names
    assert "store transaction" in names[names.index("POST") + 1 :], names
    assert names[names.index("POST") - 1] == "budget wait"
    [write] = children(finished, call, "POST")
    assert write.attributes["url.full"] == f"{stripe.base_url}/v1/customers"
    assert write.attributes["http.response.status_code"] == 200
    assert answer.records[0].upstream_id in stripe.objects("customers")
    for unit in children(finished, call, "store transaction"):
        assert unit.kind is SpanKind.CLIENT and unit.attributes["db.system"] == "sqlite"
        assert unit.attributes["code.function.name"]


async def test_a_grpc_error_status_is_on_the_calls_span(traced, spans):
    _, client = await traced()
    spans.clear()

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await client.syncs.GetSync(sync_pb2.GetSyncRequest(id="nope"), metadata=client.metadata)

    assert raised.value.code() is grpc.StatusCode.NOT_FOUND
    [call] = roots(spans.get_finished_spans(), "headwater.v1.SyncService/GetSync")
    assert call.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert call.status.status_code is StatusCode.UNSET  # the caller's mistake, not the server's error


@pytest.mark.parametrize("allowed", [False, True], ids=["by-default", "when-allowed"])
async def test_traceparent_goes_upstream_only_when_the_operator_allows_it(traced, spans, upstream, allowed):
    _, client = await traced(trace_propagate_upstream=allowed)
    sync = await stripe_sync(client, upstream.base_url)
    spans.clear()

    response = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/echo/x", headers={"traceparent": CALLER_TRACEPARENT})

    assert response.status_code == 200, response.text
    seen = upstream.requests[-1]
    [sent] = [s for s in spans.get_finished_spans() if s.name == "GET"]
    if allowed:  # our attempt's span is the upstream's parent, in the caller's trace
        assert seen.header("traceparent") == f"00-{CALLER_TRACE}-{sent.context.span_id:016x}-01"
    else:  # neither ours nor the caller's (Headwater is a hop of the caller's trace, and keeps it)
        assert seen.header("traceparent") is None
    assert sent.context.trace_id == int(CALLER_TRACE, 16)


@pytest.mark.parametrize("front", ["rest", "grpc"])
async def test_an_incoming_traceparent_makes_the_call_a_child_of_the_callers_span(traced, spans, front):
    _, client = await traced()
    spans.clear()

    if front == "rest":
        response = await client.rest.get("/v1/syncs", headers={"traceparent": CALLER_TRACEPARENT})
        assert response.status_code == 200, response.text
        name = "GET /v1/syncs"
    else:
        await client.syncs.ListSyncs(sync_pb2.ListSyncsRequest(),
                                     metadata=(*client.metadata, ("traceparent", CALLER_TRACEPARENT)))
        name = "headwater.v1.SyncService/ListSyncs"

    [call] = [s for s in spans.get_finished_spans() if s.name == name]
    assert call.parent is not None and call.parent.is_remote
    assert (call.parent.trace_id, call.parent.span_id) == (int(CALLER_TRACE, 16), int(CALLER_SPAN, 16))
    assert call.context.trace_id == int(CALLER_TRACE, 16)


async def test_a_sync_pass_is_a_trace_of_its_pages_with_their_reads_and_writes(traced, spans, fake_provider):
    running, client = await traced(**FAST_ENGINE)
    stripe = await fake_provider("stripe")
    stripe.seed("customers", 3)
    sync = await create_sync(client, stripe, "stripe:customer")

    def finished_passes():
        return [s for s in roots(spans.get_finished_spans(), "sync pass") if s.attributes.get("headwater.sync.id")]

    await eventually(lambda: backfilled(client, sync["id"]))
    # The backfill, then the first incremental pass, in one claim of the collection: one span.
    [first] = (await eventually(finished_passes))[:1]

    finished = spans.get_finished_spans()
    assert first.parent is None  # the engine's work is a trace of its own
    assert first.attributes["headwater.sync.collection"] == "stripe:customer"
    pages = children(finished, first, "sync page")
    backfill = [p for p in pages if p.attributes["headwater.sync.listing"] == "list"]
    assert sum(p.attributes["headwater.sync.records"] for p in backfill) == 3
    page = backfill[0]
    names = [name for name, _ in tree(finished, page)[1]]
    assert names[-1] == "store transaction", names  # the page and its cursor, written
    assert ["budget wait", "budget wait", "GET"] == [n for n in names if n != "store transaction"], names
    shares = [w.attributes["headwater.budget.share"] for w in children(finished, page, "budget wait")]
    assert shares == ["background", "credential"]  # a sync read takes the background share first
    [read] = children(finished, page, "GET")
    assert read.attributes["url.full"] == f"{stripe.base_url}/v1/customers"


def test_traces_are_off_without_otel_traces_exporter(monkeypatch):
    for value in (None, "none"):
        if value is None:
            monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
        else:
            monkeypatch.setenv("OTEL_TRACES_EXPORTER", value)

        assert tracing.configure() is None

        assert not tracing.enabled()
        assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)  # no SDK provider installed


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("OTEL_TRACES_EXPORTER", "otlp,jaeger", "OTEL_TRACES_EXPORTER must name otlp, console or none, not 'jaeger'"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc",
     "OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf (Headwater exports OTLP over HTTP), not 'grpc'"),
])
def test_a_misconfigured_exporter_is_refused_naming_the_variable(monkeypatch, variable, value, message):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigError) as raised:
        tracing.configure()

    assert str(raised.value) == message
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


class Collector:
    """An OTLP/HTTP collector on loopback: the spans each POST /v1/traces brought."""

    def __init__(self):
        self.exports: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.port = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        received = await read_request(scope, receive)
        if (received.method, received.path) == ("POST", "/v1/traces"):
            self.exports.append(trace_service_pb2.ExportTraceServiceRequest.FromString(received.body))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/x-protobuf")]})
        await send({"type": "http.response.body", "body": b""})

    def spans(self) -> list[tuple[str, dict]]:
        """(service.name, span) of every span received."""
        found = []
        for export in self.exports:
            for resource_spans in export.resource_spans:
                service = next(a.value.string_value for a in resource_spans.resource.attributes
                               if a.key == "service.name")
                found += [(service, span) for scope in resource_spans.scope_spans for span in scope.spans]
        return found


async def test_headwater_serve_exports_over_otlp_only_when_otel_traces_exporter_says_so(tmp_path):
    collectors = {"off": Collector(), "otlp": Collector()}
    servers = []
    for exporter, collector in collectors.items():
        collector.port, server, task = await serve_on_loopback(collector)
        servers.append((server, task))
    try:
        processes = {
            exporter: await Headwater.serve(
                f"sqlite:///{tmp_path / exporter}.db", Fernet.generate_key(),
                OTEL_TRACES_EXPORTER="" if exporter == "off" else exporter,
                OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.port}",
                OTEL_BSP_SCHEDULE_DELAY="60000",  # a minute: what reaches the collector was flushed at exit
            )
            for exporter, collector in collectors.items()
        }
        async with httpx.AsyncClient() as http:
            for process in processes.values():
                response = await http.get(f"{process.url}/v1/syncs", headers={"traceparent": CALLER_TRACEPARENT})
                assert response.status_code == 401
        for process in processes.values():  # stopped as an operator stops it
            process.process.send_signal(signal.SIGTERM)
        for process in processes.values():
            async with asyncio.timeout(30):
                await process.process.wait()
    finally:
        for server, task in servers:
            server.should_exit = True
            await finish("stopping the collector", task)

    assert collectors["off"].exports == []
    [(service, span)] = collectors["otlp"].spans()
    assert service == "headwater"
    assert span.name == "GET /v1/syncs"
    assert span.trace_id.hex() == CALLER_TRACE and span.parent_span_id.hex() == CALLER_SPAN
    attributes = {a.key: json_format.MessageToDict(a.value) for a in span.attributes}
    assert attributes["http.response.status_code"] == {"intValue": "401"}


async def test_a_method_outside_http_s_own_does_not_name_the_span(traced, spans):
    _, client = await traced()
    spans.clear()

    response = await client.rest.request("PROPFIND", "/v1/syncs")

    assert response.status_code == 405
    [call] = spans.get_finished_spans()
    assert call.name == "HTTP"  # (and a 405 names no route)
    assert call.attributes["http.request.method"] == "_OTHER"
    assert call.attributes["http.request.method_original"] == "PROPFIND"


async def test_a_call_its_caller_did_not_sample_makes_no_spans_and_goes_upstream_unsampled(traced, spans, upstream):
    _, client = await traced(trace_propagate_upstream=True)
    sync = await stripe_sync(client, upstream.base_url)
    spans.clear()

    response = await client.rest.get(f"/v1/proxy/sync/{sync['id']}/echo/x",
                                     headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-00"})

    assert response.status_code == 200, response.text
    assert spans.get_finished_spans() == ()  # the default sampler follows the caller's decision
    sent = upstream.requests[-1].header("traceparent")
    assert sent.startswith(f"00-{CALLER_TRACE}-") and sent.endswith("-00")
