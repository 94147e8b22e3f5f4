"""What traces cost on the proxy path: off (the default) and on, exporting over OTLP/HTTP.

    python -m bench traces

Three `headwater serve` processes proxy GET /v1/events?limit=10 to one static upstream (nginx,
one worker, when installed), as `python -m bench proxy` does (64 connections, proxies pinned to
CPU 1, load, upstream and collector to CPU 0):

    traces off             OTEL_TRACES_EXPORTER unset: no SDK provider, the helpers return at once
    traces on              OTEL_TRACES_EXPORTER=otlp to a loopback collector that counts spans,
                           the SDK's batch processor with its defaults (every call sampled)
    traces on, 10% sampled the same with OTEL_TRACES_SAMPLER=parentbased_traceidratio, ARG 0.1

CPU us/req is the proxy process's CPU time per request answered (the least of the rounds: other
work on the machine only adds to it), the exporter's thread included. Beside it, the span helpers
of one proxied request timed alone, as the pacer's slot is in the proxy benchmark: off, the
difference they make is below what two processes' CPU times can resolve; on, the time alone is
steadier than the processes' figures when other work shares the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import subprocess
import tempfile
import time

import httpx
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from bench._headwater import start_headwater
from bench._tools import (
    HOST,
    LOAD_CPU,
    PROXY_CPU,
    Report,
    best_of,
    free_port,
    load_tool,
    python,
    static_upstream,
    stop,
    wait_port,
)
from bench.proxy_bench import CONNECTIONS, GENEROUS, PATH, _http, _us, _with_cpu
from headwater import tracing
from headwater.upstream.budget import Permit

OFF = "traces off"
ON = "traces on (OTLP/HTTP, batch processor)"
SAMPLED = "traces on, 10% sampled"


def run(report: Report, duration: float = 4.0, rounds: int = 4) -> None:
    processes: list[subprocess.Popen] = []
    targets, pids, collectors = {}, {}, {}
    with tempfile.TemporaryDirectory() as workdir:
        try:
            base, kind = static_upstream(workdir, processes)
            otel_off = {"OTEL_TRACES_EXPORTER": "none"}
            for i, (name, otel) in enumerate([
                (OFF, otel_off),
                (ON, {"OTEL_TRACES_EXPORTER": "otlp"}),
                (SAMPLED, {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                           "OTEL_TRACES_SAMPLER_ARG": "0.1"}),
            ]):
                if otel is not otel_off:
                    port = free_port()
                    processes.append(python("bench._servers", "otlp-collector", "--port", str(port), cpu=LOAD_CPU))
                    wait_port(port, process=processes[-1])
                    collectors[name] = f"http://{HOST}:{port}"
                    otel = {**otel, "OTEL_EXPORTER_OTLP_ENDPOINT": collectors[name]}
                hw = start_headwater(workdir, str(i), f"sqlite:///{workdir}/headwater-{i}.db", cpu=PROXY_CPU,
                                     env_overrides=otel)
                processes.append(hw.process)
                sync_id = hw.stripe_sync(base, GENEROUS)
                url = f"{hw.http_url}/v1/proxy/sync/{sync_id}/{PATH}"
                targets[name] = _http(url, duration, [("authorization", f"Bearer {hw.token}")])
                pids[name] = hw.process.pid

            for measure in targets.values():  # warm up pools and caches
                measure(1.0)
            answered = dict.fromkeys(targets, 0)
            spans_before = {name: _spans(url) for name, url in collectors.items()}
            results: dict[str, list[dict]] = {}
            for _ in range(rounds):
                for name, measure in targets.items():
                    result = _with_cpu(measure, pids[name], duration)
                    answered[name] += result["rps"] * duration
                    results.setdefault(name, []).append(result)
            for process in processes:  # what the batch processors still hold is exported as they stop
                if process.pid in pids.values():
                    stop(process)
            spans = {name: _spans(url) - spans_before[name] for name, url in collectors.items()}
        finally:
            for process in reversed(processes):
                stop(process)

    best = {name: best_of(runs) for name, runs in results.items()}
    for name, runs in results.items():
        best[name]["cpu_us"] = min(r["cpu_us"] for r in runs if r.get("cpu_us"))
    report.text(
        f"GET through Headwater's REST proxy to one static upstream ({kind}); {load_tool()} -c{CONNECTIONS}, "
        f"{duration:g} s x {rounds} rounds, best round with the median req/s beside it. Proxies pinned "
        f"to CPU 1; load, upstream and collectors to CPU 0. Spans/req: what the collector received "
        f"per request answered (the batch processor drops spans when its queue is full)."
    )
    report.table(
        ["target", "req/s", "median req/s", "p99 ms", "errors", "CPU us/req", "spans/req"],
        [[n, r["rps"], r["median"], r["p99"] * 1e3, r["errors"], _us(r["cpu_us"]),
          f"{spans[n] / answered[n]:.2f}" if n in spans and answered[n] else ""]
         for n, r in best.items()],
    )
    cpu = {name: r["cpu_us"] for name, r in best.items()}
    off_us = asyncio.run(helpers_us(None, calls=200_000))
    provider = traced_provider()
    on_us = asyncio.run(helpers_us(provider))
    provider.shutdown()
    report.table(["traces' cost", "measured", "needed", "met"], [
        ["off: the span helpers of one proxied request, timed alone / its CPU",
         f"{off_us:.2f} / {cpu[OFF]:.0f} us = {off_us / cpu[OFF]:.2%}", "< 1%",
         "yes" if off_us / cpu[OFF] < 0.01 else "**no**"],
        ["on: the same, its 4 spans made and encoded for OTLP, timed alone", f"{on_us:.0f} us", "", ""],
        ["on, every call sampled: CPU per request / off", f"{cpu[ON] / cpu[OFF] - 1:+.0%}", "", ""],
        ["on, 10% sampled: CPU per request / off", f"{cpu[SAMPLED] / cpu[OFF] - 1:+.0%}", "", ""],
    ])


def _spans(collector: str) -> int:
    return httpx.get(f"{collector}/spans").json()["spans"]


async def helpers_us(provider=None, calls: int = 20_000) -> float:
    """Microseconds the tracing helpers of one proxied REST request take, timed alone: the REST
    call's span, its route and status, one store unit, the budget wait, the upstream attempt, its
    headers and its answer. `provider`: None (traces off), or the SDK's, whose spans are then made
    and, by `EncodingExporter`, encoded as the OTLP exporter encodes them."""
    tracing.use(provider)
    headers = [("accept", "application/json")]
    url = "https://api.stripe.com/v1/events"

    async def one_request():
        with tracing.rest_call("GET", "/v1/proxy/sync/s/v1/events", {}, None) as span:
            tracing.rest_route(span, "GET", "/v1/proxy/sync/{sync_id}/{path=**}")
            with tracing.store_unit("sqlite", one_request):
                pass
            async with tracing.budget_wait(contextlib.nullcontext(Permit()), "c", "credential"):
                with tracing.upstream_request("GET", url, "stripe", 1) as attempt:
                    tracing.propagated(headers, False)
                    tracing.upstream_answered(attempt, 200, "success")
            tracing.rest_answered(span, 200)

    try:
        best = math.inf
        for _ in range(3):
            began = time.process_time()
            for _ in range(calls):
                await one_request()
            if provider is not None:
                provider.force_flush()  # the batches still queued, encoded (process time counts every thread)
            best = min(best, time.process_time() - began)
        return best / calls * 1e6
    finally:
        tracing.use(None)


class EncodingExporter(SpanExporter):
    """Encodes spans as the OTLP/HTTP exporter does (protobuf), and sends them nowhere."""

    def export(self, spans) -> SpanExportResult:
        encode_spans(spans).SerializeToString()
        return SpanExportResult.SUCCESS


def traced_provider():
    """The SDK as `tracing.configure` sets it up for OTLP, but for the exporter: batches of spans
    encoded in the batch processor's thread, sent nowhere."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(EncodingExporter(), max_queue_size=100_000))
    return provider
