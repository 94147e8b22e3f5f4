"""Processes the proxy benchmarks measure, besides Headwater itself (`python -m headwater serve`).

    python -m bench._servers aiohttp-proxy UPSTREAM --port PORT  # a bare aiohttp server + client proxy
    python -m bench._servers headwater-unpaced                   # `headwater serve`, pacing taken out
    python -m bench._servers recording-upstream --port PORT      # notes when each request arrives
    python -m bench._servers otlp-collector --port PORT          # takes OTLP/HTTP spans, counts them
    python -m bench._servers stripe-customers --records N --port PORT  # N Stripe customers, read-only

`headwater-unpaced` is Headwater exactly as shipped except that its pacer lets every request
through at once (no log, no lock, no Redis): the proxy benchmark compares it with the paced server
to price pacing. It exists for that measurement only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from contextlib import asynccontextmanager

from bench._tools import HOST, StaticUpstream
from bench.http_engines import HOP_BY_HOP


def aiohttp_proxy(port: int, upstream: str) -> None:
    """The bare aiohttp baseline: aiohttp's server and client, nothing else."""
    import aiohttp
    from aiohttp import web

    upstream = upstream.rstrip("/")

    async def session_ctx(app):
        app["session"] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100), auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=30.0),
        )
        yield
        await app["session"].close()

    async def forward(request: web.Request) -> web.Response:
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        body = await request.read()
        async with request.app["session"].request(
            request.method, upstream + request.raw_path, headers=headers, data=body or None
        ) as answer:
            data = await answer.read()
            out = [(k, v) for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP]
            return web.Response(status=answer.status, headers=out, body=data)

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", forward)
    web.run_app(app, host=HOST, port=port, access_log=None, print=None, backlog=1024)


class _NoPacer:
    """A pacer that lets everything through at once (the `Pacer` protocol, doing nothing)."""

    @asynccontextmanager
    async def _slot(self):
        from headwater.upstream.budget import Permit

        yield Permit()

    def slot(self, key, budget, timeout):
        return self._slot()

    async def pause(self, key, seconds, reason=""):
        pass

    async def started(self, key, budget, permit):
        pass

    async def aclose(self):
        pass


def headwater_unpaced() -> int:
    import headwater.server
    from headwater.cli import main as headwater_main

    headwater.server.make_pacer = lambda redis_url, margin=0.0: _NoPacer()
    return headwater_main(["serve"])


class _RecordingUpstream(StaticUpstream):
    """The static upstream, noting the arrival time (time.monotonic) of every GET request;
    `GET /arrivals` answers them as a JSON list (and is not itself recorded)."""

    arrivals: list[float] = []

    def data_received(self, data):
        now = time.monotonic()
        if data.startswith(b"GET /arrivals "):
            body = json.dumps(self.arrivals).encode()
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                + body
            )
            return
        self.arrivals.extend(now for _ in range(data.count(b"\r\n\r\n")))
        super().data_received(data)


async def recording_upstream(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_RecordingUpstream, HOST, port, backlog=1024)
    async with server:
        await server.serve_forever()


def otlp_collector(port: int) -> None:
    """An OTLP/HTTP trace receiver that keeps nothing but a count: POST /v1/traces takes an
    export, GET /spans answers how many spans came so far."""
    from aiohttp import web
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    received = 0

    async def export(request: web.Request) -> web.Response:
        nonlocal received
        batch = ExportTraceServiceRequest.FromString(await request.read())
        received += sum(len(scope.spans) for rs in batch.resource_spans for scope in rs.scope_spans)
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def count(request: web.Request) -> web.Response:
        return web.json_response({"spans": received})

    app = web.Application()
    app.router.add_post("/v1/traces", export)
    app.router.add_get("/spans", count)
    web.run_app(app, host=HOST, port=port, access_log=None, print=None)


STRIPE_CREATED = 1_700_000_000  # customer i of `stripe-customers` was created at STRIPE_CREATED + i


def stripe_customer(i: int) -> dict:
    """Customer i of `stripe-customers`, as Stripe's API shows a customer (its usual fields)."""
    return {
        "id": f"cus_{i:010d}", "object": "customer", "address": None, "balance": 0, "created": STRIPE_CREATED + i,
        "currency": "usd", "default_source": None, "delinquent": False, "description": f"Customer {i}",
        "email": f"customer{i}@example.com", "invoice_prefix": f"B{i:08X}", "livemode": False,
        "metadata": {"plan": "bench", "index": str(i)}, "name": f"Customer {i}", "phone": None,
        "preferred_locales": [], "shipping": None, "tax_exempt": "none",
    }


def stripe_customers(port: int, records: int) -> None:
    """`records` Stripe customers behind Stripe's list API (`GET /v1/customers`, newest first,
    `limit` and `starting_after`), an empty `GET /v1/events` and `GET /v1/balance`: what a
    customers backfill reads, with no rate limit and nothing kept per customer, so a page costs
    the same at the millionth customer as at the first (the tests' Stripe emulator sorts every
    object on each page). Customer i is `stripe_customer(i)`; the token is not checked."""
    from aiohttp import web

    async def customers(request: web.Request) -> web.Response:
        limit = min(max(int(request.query.get("limit", "10")), 1), 100)
        after = request.query.get("starting_after")
        top = int(after.removeprefix("cus_")) - 1 if after else records - 1  # newest first
        page = [stripe_customer(i) for i in range(top, max(top - limit, -1), -1)]
        return web.json_response({"object": "list", "data": page, "has_more": top - limit >= 0,
                                  "url": "/v1/customers"})

    async def events(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [], "has_more": False, "url": "/v1/events"})

    async def balance(request: web.Request) -> web.Response:
        return web.json_response({"object": "balance", "available": [], "pending": [], "livemode": False})

    app = web.Application()
    app.router.add_get("/v1/customers", customers)
    app.router.add_get("/v1/events", events)
    app.router.add_get("/v1/balance", balance)
    web.run_app(app, host=HOST, port=port, access_log=None, print=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    proxy = commands.add_parser("aiohttp-proxy")
    proxy.add_argument("upstream")
    proxy.add_argument("--port", type=int, required=True)
    commands.add_parser("headwater-unpaced")
    recording = commands.add_parser("recording-upstream")
    recording.add_argument("--port", type=int, required=True)
    collector = commands.add_parser("otlp-collector")
    collector.add_argument("--port", type=int, required=True)
    customers = commands.add_parser("stripe-customers")
    customers.add_argument("--records", type=int, required=True)
    customers.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.command == "aiohttp-proxy":
        aiohttp_proxy(args.port, args.upstream)
    elif args.command == "stripe-customers":
        stripe_customers(args.port, args.records)
    elif args.command == "otlp-collector":
        otlp_collector(args.port)
    elif args.command == "recording-upstream":
        try:
            asyncio.run(recording_upstream(args.port))
        except KeyboardInterrupt:
            pass
    else:
        sys.exit(headwater_unpaced())


if __name__ == "__main__":
    main()
