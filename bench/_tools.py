"""What the benchmarks share: the report, processes on loopback, the static upstream, wrk.

Everything listens on 127.0.0.1. On a machine with 2 or more CPUs the thing measured (a proxy) is
pinned to CPU 1 and the load generator and the static upstream to CPU 0 (`pin`), so a figure is
what one core of the proxy can do.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

HOST = "127.0.0.1"
# What the static upstream answers: a small JSON object, like most API answers.
BODY = b'{"id":"evt_123","object":"event","data":{"amount":1999,"currency":"usd","paid":true}}\n'
PROXY_CPU = 1
LOAD_CPU = 0


# ---------------------------------------------------------------------------------------------
# The report a benchmark fills


class Report:
    """Markdown that a benchmark writes, printed as it goes and kept for BENCHMARKS.md.

        report.text("64 connections, 5 s per round")
        report.table(["target", "req/s"], [["nginx", "54012"]])
    """

    def __init__(self, name: str):
        self.name = name
        self.parts: list[str] = []

    def text(self, paragraph: str) -> None:
        self._add(paragraph.strip())

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        cells = [[str(c) for c in columns], *[[_cell(v) for v in row] for row in rows]]
        widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
        lines = ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |" for row in cells]
        lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        self._add("\n".join(lines))

    def markdown(self) -> str:
        return "\n\n".join(self.parts)

    def _add(self, part: str) -> None:
        self.parts.append(part)
        print(part + "\n", flush=True)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


# ---------------------------------------------------------------------------------------------
# Processes and ports


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"the process for port {port} exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on {HOST}:{port}")


def pin(cpu: int) -> list[str]:
    """`taskset -c CPU` when the machine has the CPUs and taskset; else nothing."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu)]
    return []


def python(module: str, *args: str, cpu: int | None = None, **popen) -> subprocess.Popen:
    """`python -m module args` from the repository root, optionally pinned to a CPU."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.Popen(
        [*(pin(cpu) if cpu is not None else []), sys.executable, "-m", module, *args], cwd=root, **popen
    )


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) the process has used so far; None where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---------------------------------------------------------------------------------------------
# The static upstream: nginx (one worker) when installed, else a small asyncio server


class StaticUpstream(asyncio.Protocol):
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


async def serve_static_upstream(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(StaticUpstream, HOST, port, backlog=1024)
    async with server:
        await server.serve_forever()


def static_upstream(workdir: str, processes: list[subprocess.Popen]) -> tuple[str, str]:
    """Starts the static upstream on a free port, adds it to `processes` (to stop), waits until it
    listens; its base URL and a description of it."""
    port = free_port()
    upstream, kind = start_static_upstream(port, workdir)
    processes.append(upstream)
    wait_port(port)
    return f"http://{HOST}:{port}", kind


def start_static_upstream(port: int, workdir: str) -> tuple[subprocess.Popen, str]:
    """The upstream every proxy benchmark forwards to, and a description of it."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not nginx:
        return python("bench._tools", "upstream", str(port), cpu=LOAD_CPU), "asyncio server"
    body = BODY.decode().strip().replace("'", "\\'")
    conf = os.path.join(workdir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
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
    process = subprocess.Popen([*pin(LOAD_CPU), nginx, "-c", conf, "-p", workdir], stderr=subprocess.DEVNULL)
    return process, "nginx, 1 worker"


# ---------------------------------------------------------------------------------------------
# Load generation: wrk, or an asyncio fallback


def load_tool() -> str:
    return "wrk -t1" if shutil.which("wrk") else "asyncio load generator"


def _seconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def run_wrk(url: str, connections: int, duration: float, headers: Sequence[tuple[str, str]] = ()) -> dict:
    command = [*pin(LOAD_CPU), "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    for name, value in headers:
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
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


async def _load(url: str, connections: int, duration: float, headers: Sequence[tuple[str, str]]) -> dict:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    request = f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n{extra}\r\n".encode()
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + duration

    async def worker():
        nonlocal errors
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            while time.perf_counter() < stop_at:
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
    return summary(latencies, elapsed, errors, "asyncio load generator")


def summary(latencies: list[float], elapsed: float, errors: int, note: str = "") -> dict:
    latencies = sorted(latencies)
    return {
        "rps": len(latencies) / elapsed,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": latencies[int(len(latencies) * 0.99)] if latencies else float("nan"),
        "errors": errors,
        "note": note,
    }


def measure_http(url: str, connections: int, duration: float, headers: Sequence[tuple[str, str]] = ()) -> dict:
    """req/s, p50 and p99 (seconds), errors (non-2xx/3xx answers) of GET `url` under load."""
    if shutil.which("wrk"):
        return run_wrk(url, connections, duration, headers)
    return asyncio.run(_load(url, connections, duration, headers))


def best_of(runs: list[dict]) -> dict:
    """The least disturbed round (most req/s), with the median req/s of all rounds beside it."""
    best = dict(max(runs, key=lambda run: run["rps"]))
    best["median"] = statistics.median(run["rps"] for run in runs)
    return best


if __name__ == "__main__":
    if sys.argv[1:2] == ["upstream"]:
        try:
            asyncio.run(serve_static_upstream(int(sys.argv[2])))
        except KeyboardInterrupt:
            pass
