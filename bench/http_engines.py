"""Which HTTP client engine should the forwarder use? A bare proxy, measured.

A uvicorn ASGI app (the ~30 lines of `make_app`) forwards every request it gets to the static
upstream on loopback, with one of:

    httpx          httpx.AsyncClient on its default transport (httpcore)
    httpx-aiohttp  httpx.AsyncClient on httpx_aiohttp.AiohttpTransport
    aiohttp        a raw aiohttp.ClientSession
    forwarder      headwater.upstream.forwarder.Forwarder (what the gateway ships)

and wrk (else the asyncio load generator of bench/_tools.py) drives it; the upstream is measured
directly too. The proxy is pinned to CPU 1, load and upstream to CPU 0 (see bench/_tools.py).

    python -m bench http_engines                               # part of `make bench`
    python -m bench.http_engines --duration 10 --rounds 3      # alone, with its own options
    python -m bench.http_engines --engines httpx,aiohttp
    python -m bench.http_engines proxy --engine aiohttp --port 8001 --upstream http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import os
import tempfile

from bench._tools import (
    HOST,
    PROXY_CPU,
    Report,
    best_of,
    free_port,
    load_tool,
    measure_http,
    python,
    start_static_upstream,
    stop,
    wait_port,
)

ENGINES = ("httpx", "httpx-aiohttp", "aiohttp", "forwarder")
HOP_BY_HOP = frozenset(
    {"host", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
     "content-length"}
)


# ---------------------------------------------------------------------------------------------
# The proxy: one ASGI app, four engines


def make_engine(name: str, max_connections: int):
    """Returns (send, aclose); send(method, url, headers, body) -> (status, headers, body)."""
    if name == "httpx":
        import httpx

        client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            timeout=30.0,
        )

        async def send(method, url, headers, body):
            r = await client.request(method, url, headers=headers, content=body)
            return r.status_code, r.headers.raw, r.content

        return send, client.aclose

    if name == "httpx-aiohttp":
        import aiohttp
        import httpx
        from httpx_aiohttp import AiohttpTransport

        transport = AiohttpTransport(
            client=lambda: aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=max_connections), auto_decompress=False
            )
        )
        client = httpx.AsyncClient(transport=transport, timeout=30.0)

        async def send(method, url, headers, body):
            r = await client.request(method, url, headers=headers, content=body)
            return r.status_code, r.headers.raw, r.content

        return send, client.aclose

    if name == "aiohttp":
        import aiohttp

        session = None

        async def send(method, url, headers, body):
            nonlocal session
            if session is None:
                session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=max_connections), auto_decompress=False,
                    timeout=aiohttp.ClientTimeout(total=30.0),
                )
            async with session.request(method, url, headers=headers, data=body or None) as r:
                return r.status, r.raw_headers, await r.read()

        async def aclose():
            if session is not None:
                await session.close()

        return send, aclose

    if name == "forwarder":
        from headwater.upstream.forwarder import Forwarder, UpstreamRequest

        forwarder = Forwarder(allow_private_networks=True, max_connections=max_connections)

        async def send(method, url, headers, body):
            r = await forwarder.send(UpstreamRequest(method, url, headers, body, 30.0))
            return r.status, [(k.encode("latin-1"), v.encode("latin-1")) for k, v in r.headers], r.body

        return send, forwarder.aclose

    raise SystemExit(f"unknown engine {name!r}; one of {', '.join(ENGINES)}")


def make_app(engine: str, upstream: str, max_connections: int):
    send = None
    upstream = upstream.rstrip("/")

    async def app(scope, receive, respond):
        nonlocal send
        if scope["type"] != "http":
            return
        if send is None:
            send, _ = make_engine(engine, max_connections)
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        url = upstream + scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode("latin-1")
        headers = [
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP
        ]
        try:
            status, out_headers, out_body = await send(scope["method"], url, headers, body)
        except Exception as exc:  # noqa: BLE001 - a bench: report and go on
            status, out_headers, out_body = 502, [], type(exc).__name__.encode()
        await respond({
            "type": "http.response.start",
            "status": status,
            "headers": [(k, v) for k, v in out_headers if k.lower() not in HOP_BY_HOP],
        })
        await respond({"type": "http.response.body", "body": out_body})

    return app


def run_proxy(engine: str, port: int, upstream: str, max_connections: int) -> None:
    import uvicorn

    config = uvicorn.Config(
        make_app(engine, upstream, max_connections), host=HOST, port=port, log_level="warning",
        access_log=False, lifespan="off", backlog=1024,
    )
    uvicorn.Server(config).run()



# ---------------------------------------------------------------------------------------------
# The comparison


def compare(engines: list[str], connections: int, duration: float, max_connections: int, rounds: int) -> dict:
    """{target: best round}. Rounds interleave the targets, so load from elsewhere on the machine
    hits all alike; each target's best round is kept (the least disturbed)."""
    results: dict[str, list[dict]] = {}
    proxies = {}
    with tempfile.TemporaryDirectory() as workdir:
        up_port = free_port()
        upstream, kind = start_static_upstream(up_port, workdir)
        direct = f"upstream directly ({kind})"
        try:
            wait_port(up_port)
            for engine in engines:
                port = free_port()
                with open(os.path.join(workdir, f"{engine}.log"), "w") as log:
                    proxies[engine] = (port, python(
                        "bench.http_engines", "proxy", "--engine", engine, "--port", str(port),
                        "--upstream", f"http://{HOST}:{up_port}", "--max-connections", str(max_connections),
                        cpu=PROXY_CPU, stderr=log,
                    ))
            targets = {direct: up_port, **{engine: port for engine, (port, _) in proxies.items()}}
            for port in targets.values():
                wait_port(port)
                measure_http(f"http://{HOST}:{port}/v1/events?limit=10", connections, 2)  # warm up pools
            for _ in range(rounds):
                for name, port in targets.items():
                    url = f"http://{HOST}:{port}/v1/events?limit=10"
                    results.setdefault(name, []).append(measure_http(url, connections, duration))
        finally:
            for _, process in proxies.values():
                stop(process)
            stop(upstream)
    return {name: best_of(runs) for name, runs in results.items()}


def write(report: Report, results: dict, connections: int, duration: float, rounds: int) -> None:
    report.text(
        f"A bare uvicorn proxy (`bench/http_engines.py`) on one pinned core, per HTTP client engine; "
        f"{load_tool()} -c{connections}, {duration:g} s x {rounds} rounds, best round shown with the "
        f"median req/s of the rounds beside it."
    )
    aiohttp = results.get("aiohttp", {}).get("rps")
    rows = []
    for name, r in results.items():
        share = f"{r['rps'] / aiohttp:.0%}" if aiohttp and not name.startswith("upstream") else ""
        rows.append([name, r["rps"], r["median"], r["p50"] * 1e3, r["p99"] * 1e3, r["errors"], share])
    report.table(["engine", "req/s", "median req/s", "p50 ms", "p99 ms", "errors", "vs raw aiohttp"], rows)


def run(report: Report, duration: float = 5.0, rounds: int = 2) -> None:
    """`make bench`'s part: every engine, 64 connections."""
    connections = 64
    results = compare(list(ENGINES), connections, duration, 100, rounds)
    write(report, results, connections, duration, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("proxy")
    p.add_argument("--engine", choices=ENGINES, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--max-connections", type=int, default=100)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--max-connections", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.command == "proxy":
        run_proxy(args.engine, args.port, args.upstream, args.max_connections)
    else:
        engines = [e for e in args.engines.split(",") if e]
        results = compare(engines, args.connections, args.duration, args.max_connections, args.rounds)
        write(Report("http_engines"), results, args.connections, args.duration, args.rounds)


if __name__ == "__main__":
    main()
