"""Which HTTP client engine should the forwarder use? A bare proxy, measured.

A uvicorn ASGI app forwards every request it gets to a static upstream on loopback, with one of:

    httpx          httpx.AsyncClient on its default transport (httpcore)
    httpx-aiohttp  httpx.AsyncClient on httpx_aiohttp.AiohttpTransport
    aiohttp        a raw aiohttp.ClientSession
    forwarder      headwater.upstream.forwarder.Forwarder (what the gateway ships)

and a load generator (wrk, else a built-in asyncio one) drives it; the upstream is also measured
directly. Loopback only: every address here is 127.0.0.1.

    python bench/http_engines.py                      # all engines, wrk -t1 -c64 -d10s, 3 rounds
    python bench/http_engines.py --duration 5 --engines httpx,aiohttp
    python bench/http_engines.py proxy --engine aiohttp --port 8001 --upstream http://127.0.0.1:8000/
    python bench/http_engines.py upstream --port 8000

On a 2-core machine the proxy is pinned to CPU 1 and the load generator and upstream to CPU 0
(taskset, when present), so the number measured is what one proxy core can forward.
The upstream is nginx (one worker) when it is installed, else a small asyncio server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HOST = "127.0.0.1"
BODY = b'{"id":"evt_123","object":"event","data":{"amount":1999,"currency":"usd","paid":true}}\n'
ENGINES = ("httpx", "httpx-aiohttp", "aiohttp", "forwarder")
HOP_BY_HOP = frozenset(
    {"host", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
     "content-length"}
)


# ---------------------------------------------------------------------------------------------
# The static upstream (used when nginx is not installed)


class _Upstream(asyncio.Protocol):
    RESPONSE = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(BODY)
    ) + BODY

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        self.buffer += data
        out = []
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = self.buffer[:end].lower()
            length = 0
            at = head.find(b"content-length:")
            if at >= 0:
                length = int(head[at + 15 :].split(b"\r\n", 1)[0])
            if len(self.buffer) < end + 4 + length:
                break
            self.buffer = self.buffer[end + 4 + length :]
            out.append(self.RESPONSE)
        if out:
            self.transport.write(b"".join(out))


async def serve_upstream(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_Upstream, HOST, port, backlog=1024)
    async with server:
        await server.serve_forever()


def start_nginx(port: int, workdir: str) -> subprocess.Popen | None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not nginx:
        return None
    body = BODY.decode().strip().replace("'", "\\'")
    conf = os.path.join(workdir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    server {{
        listen {HOST}:{port} reuseport backlog=1024;
        location / {{ default_type application/json; return 200 '{body}\\n'; }}
    }}
}}
""")
    return subprocess.Popen([*_pin(0), nginx, "-c", conf, "-p", workdir], stderr=subprocess.DEVNULL)


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
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))
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
# Load generation: wrk, or an asyncio fallback


def _pin(cpu: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu)]
    return []


def _seconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def run_wrk(url: str, connections: int, duration: float) -> dict:
    out = subprocess.run(
        [*_pin(0), "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.MULTILINE))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)$", out, re.MULTILINE)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": _seconds(latency["50"]),
        "p99": _seconds(latency["99"]),
        "errors": int(errors.group(1)) if errors else 0,
        "note": socket_errors.group(1) if socket_errors else "",
    }


async def _load(url: str, connections: int, duration: float) -> dict:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    request = f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + duration

    async def worker():
        nonlocal errors
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            while time.perf_counter() < stop:
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                if not head.startswith(b"HTTP/1.1 2"):
                    errors += 1
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50": statistics.median(latencies),
        "p99": latencies[int(len(latencies) * 0.99)],
        "errors": errors,
        "note": "asyncio load generator",
    }


def measure(url: str, connections: int, duration: float) -> dict:
    if shutil.which("wrk"):
        return run_wrk(url, connections, duration)
    return asyncio.run(_load(url, connections, duration))


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on {HOST}:{port}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_all(engines: list[str], connections: int, duration: float, max_connections: int, rounds: int) -> None:
    """Rounds interleave the targets, so load from elsewhere on the machine hits all alike; each
    target's best round is reported (the least disturbed), with the median req/s beside it."""
    me = os.path.abspath(__file__)
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        up_port = free_port()
        upstream = start_nginx(up_port, workdir)
        kind = "nginx, 1 worker"
        if upstream is None:
            upstream = subprocess.Popen([*_pin(0), sys.executable, me, "upstream", "--port", str(up_port)])
            kind = "asyncio server"
        direct = f"upstream directly ({kind})"
        proxies = {}
        try:
            wait_port(up_port)
            for engine in engines:
                port = free_port()
                proxies[engine] = (port, subprocess.Popen([
                    *_pin(1), sys.executable, me, "proxy", "--engine", engine, "--port", str(port),
                    "--upstream", f"http://{HOST}:{up_port}", "--max-connections", str(max_connections),
                ]))
            targets = {direct: up_port, **{engine: port for engine, (port, _) in proxies.items()}}
            for port in targets.values():
                wait_port(port)
                measure(f"http://{HOST}:{port}/v1/events?limit=10", connections, 2)  # warm up pools
            for _ in range(rounds):
                for name, port in targets.items():
                    url = f"http://{HOST}:{port}/v1/events?limit=10"
                    results.setdefault(name, []).append(measure(url, connections, duration))
        finally:
            for _, process in proxies.values():
                stop(process)
            stop(upstream)

    tool = "wrk -t1" if shutil.which("wrk") else "asyncio load generator"
    print(f"\n{tool} -c{connections} -d{duration:g}s x {rounds} rounds; python {sys.version.split()[0]};"
          f" {os.cpu_count()} CPUs; best round shown, median req/s beside it\n")
    print(f"| {'target':<36} | {'req/s':>7} | {'median':>7} | {'p50 ms':>7} | {'p99 ms':>7} | errors |")
    print(f"|{'-' * 38}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 9}|--------|")
    for name, runs in results.items():
        r = max(runs, key=lambda run: run["rps"])
        median = statistics.median(run["rps"] for run in runs)
        print(
            f"| {name:<36} | {r['rps']:>7.0f} | {median:>7.0f} | {r['p50'] * 1e3:>7.2f} | {r['p99'] * 1e3:>7.2f} |"
            f" {r['errors']:>6} | {r['note']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("proxy")
    p.add_argument("--engine", choices=ENGINES, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--max-connections", type=int, default=100)
    u = sub.add_parser("upstream")
    u.add_argument("--port", type=int, required=True)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--max-connections", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.command == "proxy":
        run_proxy(args.engine, args.port, args.upstream, args.max_connections)
    elif args.command == "upstream":
        try:
            asyncio.run(serve_upstream(args.port))
        except KeyboardInterrupt:
            pass
    else:
        run_all([e for e in args.engines.split(",") if e], args.connections, args.duration, args.max_connections,
                args.rounds)


if __name__ == "__main__":
    main()
