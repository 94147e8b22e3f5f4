"""The seam between the upstream pipeline and the network, like httpx's BaseTransport.

    class Transport(Protocol):
        async def send(self, request: UpstreamRequest) -> UpstreamResponse: ...

The real transport is the aiohttp `Forwarder` (forwarder.py). `MockTransport(handler)` answers
from a function instead, so the pipeline's retry, refresh and pause decisions can be tested
without sockets (tests/test_gateway.py):

    transport = MockTransport(lambda request: UpstreamResponse(429, [("Retry-After", "2")], b"", 0.0))
    response = await transport.send(UpstreamRequest("GET", "https://api.stripe.com/v1/charges", []))

A handler may be sync or async, and may raise the errors below (UpstreamTimeout, ...) to play a
network failure.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "ForbiddenAddress",
    "MockTransport",
    "ResponseTooLarge",
    "Transport",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamRequest",
    "UpstreamResponse",
    "UpstreamTimeout",
]


@dataclass
class UpstreamRequest:
    method: str
    url: str  # absolute http(s) URL, query included
    headers: list[tuple[str, str]]
    body: bytes = b""
    timeout: float | None = None  # seconds for the whole exchange


@dataclass
class UpstreamResponse:
    status: int
    headers: list[tuple[str, str]]  # as received, repeated headers kept, original case
    body: bytes
    elapsed: float  # seconds


class UpstreamError(Exception):
    """Base of a transport's errors. The message names the host, never the URL."""

    def __init__(self, message: str = "", host: str | None = None):
        super().__init__(message)
        self.host = host


class UpstreamTimeout(UpstreamError):
    """Connect or the exchange exceeded its timeout."""


class UpstreamConnectError(UpstreamError):
    """Refused, reset, closed mid-response, DNS failure, TLS failure, malformed response."""


class ForbiddenAddress(UpstreamError):
    """The host resolved to a private, loopback, link-local, metadata or otherwise non-public address."""


class ResponseTooLarge(UpstreamError):
    """The response body is over max_response_bytes."""


class Transport(Protocol):
    async def send(self, request: UpstreamRequest) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


Handler = Callable[[UpstreamRequest], UpstreamResponse | Awaitable[UpstreamResponse]]


class MockTransport:
    """A transport that answers every request with `handler(request)`; `requests` records them."""

    def __init__(self, handler: Handler):
        self.handler = handler
        self.requests: list[UpstreamRequest] = []

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        self.requests.append(request)
        answer = self.handler(request)
        if inspect.isawaitable(answer):
            answer = await answer
        return answer

    async def aclose(self) -> None:
        pass
