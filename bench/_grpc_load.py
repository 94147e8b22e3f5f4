"""A gRPC load generator for ProxyService/Forward (wrk speaks only HTTP/1.1).

    python -m bench._grpc_load TARGET TOKEN SYNC_ID PATH --concurrency 64 --duration 5

Keeps `concurrency` Forward calls in flight on one channel for `duration` seconds and prints one
JSON line: {"rps", "p50", "p99", "errors", "note"} (seconds), like bench._tools.measure_http.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import grpc

from bench._tools import summary
from headwater.v1 import proxy_pb2, proxy_pb2_grpc


async def load(target: str, token: str, sync_id: str, path: str, concurrency: int, duration: float) -> dict:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = proxy_pb2_grpc.ProxyServiceStub(channel)
        path, _, query = path.partition("?")
        request = proxy_pb2.ForwardRequest(sync_id=sync_id, method="GET", path=path, query=query)
        metadata = (("authorization", f"Bearer {token}"),)
        latencies: list[float] = []
        errors = 0
        stop_at = time.perf_counter() + duration

        async def caller():
            nonlocal errors
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                try:
                    answer = await stub.Forward(request, metadata=metadata, timeout=30)
                    if answer.status >= 400:
                        errors += 1
                except grpc.aio.AioRpcError:
                    errors += 1
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        return summary(latencies, time.perf_counter() - began, errors, f"grpc.aio client, {concurrency} in flight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target")
    parser.add_argument("token")
    parser.add_argument("sync_id")
    parser.add_argument("path")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    result = asyncio.run(load(args.target, args.token, args.sync_id, args.path, args.concurrency, args.duration))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
