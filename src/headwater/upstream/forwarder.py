"""The one way Headwater sends an HTTP request upstream.

    forwarder = Forwarder()                                   # one per process
    response = await forwarder.send(UpstreamRequest("GET", "https://api.stripe.com/v1/charges?limit=3",
                                                     [("authorization", "Bearer sk_...")], timeout=30))
    await forwarder.aclose()

Engine: a raw `aiohttp.ClientSession`, not httpx. The design asks for httpx's API on the engine that
measures fastest, unless the gap to raw aiohttp is over 30%. Measured with bench/http_engines.py
(a bare uvicorn proxy, one core, wrk -c64) httpx on httpcore forwarded ~130 req/s, httpx on the
httpx-aiohttp transport ~1.0k req/s and aiohttp ~3.1k req/s: httpx's own request/response layer
costs about two thirds of the proxy's throughput, so the forwarder sits directly on aiohttp behind
this module's interface, and nothing else in Headwater imports the engine.

What it does to a request, and does not:
- sends exactly the given method, URL (query bytes verbatim) and headers, plus what HTTP needs
  (Host, Content-Length); no User-Agent, Accept, Accept-Encoding or Content-Type of its own. Framing
  headers given by the caller (Content-Length, Transfer-Encoding, Connection, Keep-Alive) are
  dropped and recomputed, so a wrong one cannot desynchronise a pooled connection. Repeated
  headers go out in order; a repeat spelt in another case takes the first spelling.
- never follows redirects, never decompresses (the body is the upstream's bytes, with its
  Content-Encoding), keeps no cookies between requests (they belong to different tenants).
- response headers come back as received: repeated ones kept, names in their original case, bytes
  decoded as latin-1 (lossless: `.encode("latin-1")` gives the wire bytes back).
- the body is read up to `max_response_bytes`; past that the connection is dropped (ResponseTooLarge).
- `timeout` bounds the whole exchange (connect, send, headers, body); `connect_timeout` bounds
  the TCP/TLS connect alone.
- SSRF guard (unless `allow_private_networks`): a name is resolved by a guarding resolver that
  refuses the request when any address it resolves to is not public, and every socket is checked
  again on the very address it is about to connect to (a socket factory), so an IP literal, a
  cached or a re-bound DNS answer cannot reach loopback, private, link-local (cloud metadata),
  shared (100.64/10), unspecified, multicast or reserved space, nor their IPv4-mapped, 6to4,
  Teredo or NAT64 forms, nor IPv4 spelt in the C library's legacy numeric forms (`127.1`,
  `2130706433`).
- errors name the host only, never the URL (queries may carry secrets), and do not chain the
  engine's exception (whose text often carries the URL).
"""

from __future__ import annotations

import functools
import ipaddress
import math
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver
from multidict import CIMultiDict
from yarl import URL

__all__ = [
    "ForbiddenAddress",
    "Forwarder",
    "ResponseTooLarge",
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
    """Base of the forwarder's errors. The message names the host, never the URL."""

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


# -------------------------------------------------------------------------------------------------
# SSRF guard

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_forbidden_address(address: str) -> bool:
    """True when connecting to `address` (an IP literal, IPv6 scope allowed) must be refused."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return True  # not an address we understand: refuse
    if ip.version == 6:
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is the IPv4 host a.b.c.d
            return _not_public(ip.ipv4_mapped)
        embedded = ip.sixtofour
        if embedded is None and ip.teredo is not None:
            embedded = ip.teredo[1]
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and _not_public(embedded):
            return True
    return _not_public(ip)


def _not_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


class _Refused(Exception):
    """Raised inside the connector (not an OSError, so aiohttp lets it through untouched)."""

    def __init__(self, address: str):
        super().__init__(address)
        self.address = address


class _GuardedResolver(AbstractResolver):
    """aiohttp's default resolver, refusing names that resolve to any non-public address."""

    def __init__(self) -> None:
        self._inner = aiohttp.DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> Any:
        hosts = await self._inner.resolve(host, port, family)
        for resolved in hosts:
            if is_forbidden_address(resolved["host"]):
                raise _Refused(resolved["host"])
        return hosts

    async def close(self) -> None:
        await self._inner.close()


def legacy_ipv4_address(host: str) -> str | None:
    """The address a host spelt in one of inet_aton's legacy numeric forms means, or None.

        legacy_ipv4_address("127.1")         # "127.0.0.1" (so do "2130706433" and "0x7f.1")
        legacy_ipv4_address("127.0.0.1")     # None: the usual form, which the guard already reads
    """
    try:
        address = socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None
    return None if address == host else address


def _guarded_socket(addr_info: tuple) -> socket.socket:
    """The last word: checks the address the socket is about to connect to, whatever resolved it."""
    family, type_, proto, _, sockaddr = addr_info
    if is_forbidden_address(sockaddr[0]):
        raise _Refused(sockaddr[0])
    return socket.socket(family=family, type=type_, proto=proto)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """Verifying TLS, trusting the system's CAs and certifi's bundle (so slim images work too).

    Built once per process (loading the CA bundles takes ~0.1 s)."""
    context = ssl.create_default_context()
    try:
        import certifi

        context.load_verify_locations(certifi.where())
    except (ImportError, OSError):
        pass
    return context


# -------------------------------------------------------------------------------------------------
# The forwarder

# Computed by the engine from the body; a caller's value could desynchronise a pooled connection.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
# Responses whose Content-Length describes no body of their own (RFC 9110 8.6).
_NO_BODY_STATUSES = frozenset({204, 304})
# Headers aiohttp would otherwise add on its own.
_NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


class _ExactRequest(aiohttp.ClientRequest):
    """aiohttp's request, adding none of its default headers (_NO_AUTO_HEADERS).

    The same as passing the session `skip_auto_headers=_NO_AUTO_HEADERS`, which makes aiohttp sort
    the names, build a multidict of them and copy the request's headers on every request (about 3%
    of a proxied request's CPU); here the skip list is built once. tests/test_forwarder.py checks
    that nothing is added."""

    _SKIP = CIMultiDict((name, None) for name in _NO_AUTO_HEADERS)

    def update_auto_headers(self, skip_auto_headers) -> None:
        self._skip_auto_headers = self._SKIP


class Forwarder:
    def __init__(
        self,
        *,
        allow_private_networks: bool = False,
        max_response_bytes: int = 50 * 2**20,
        connect_timeout: float = 10.0,
        max_connections: int = 1000,
    ):
        self.allow_private_networks = allow_private_networks
        self.max_response_bytes = max_response_bytes
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._no_timeout = _exact_timeout(None, connect_timeout)
        self._timeouts: dict[int, aiohttp.ClientTimeout] = {}  # see _timeout
        # Loading the CA bundles blocks for ~0.15 s: here, at start-up, not in the first request
        # (which already holds its pacer slot, so the delay would bunch its start with later ones).
        self._ssl = _ssl_context()

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        """A total timeout of `seconds`, rounded down to 10 ms (never past the caller's deadline);
        the objects are reused, as most calls ask for about the same time (the default deadline
        less a few milliseconds)."""
        key = int(seconds * 100)
        if key == 0:
            return _exact_timeout(seconds, seconds)
        timeout = self._timeouts.get(key)
        if timeout is None:
            if len(self._timeouts) >= 10_000:
                self._timeouts.clear()
            total = key / 100
            timeout = self._timeouts[key] = _exact_timeout(total, min(total, self.connect_timeout))
        return timeout

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop the session will live on.
        guarded = not self.allow_private_networks
        connector = aiohttp.TCPConnector(
            ssl=self._ssl,
            limit=self.max_connections,
            limit_per_host=0,
            resolver=_GuardedResolver() if guarded else None,
            socket_factory=_guarded_socket if guarded else None,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            request_class=_ExactRequest,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,  # no proxies or .netrc credentials from the environment
            timeout=self._no_timeout,
            raise_for_status=False,
            max_line_size=16 * 1024,
            max_field_size=64 * 1024,
        )
        return self._session

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        session = self._session or self._open()
        raw = request.url
        try:
            # encoded=True: the path and query go out byte for byte as given (no re-quoting).
            url = URL(raw, encoded=True) if raw.isascii() else URL(raw)
        except (ValueError, TypeError):
            raise UpstreamError("the upstream URL is not a valid URL") from None
        host = url.raw_host
        if not host or url.scheme not in ("http", "https"):
            raise UpstreamError(f"{host or 'the upstream URL'}: only absolute http(s) URLs can be sent", host)
        seconds = request.timeout
        if seconds is None:
            timeout = self._no_timeout
        elif seconds > 0:
            timeout = self._timeout(seconds)
        else:  # aiohttp reads a total of 0 or less as "no limit"
            raise UpstreamTimeout(f"{host}: no time left to send the request", host)
        headers = request.headers
        seen = set()
        for name, _ in headers:
            low = name.lower()
            if low in _FRAMING_HEADERS or low in seen:
                headers = _clean_headers(headers)
                break
            seen.add(low)
        limit = self.max_response_bytes
        started = time.perf_counter()
        try:
            # aiohttp itself refuses to connect to "127.1" or "2130706433" (an invalid URL to it),
            # before any resolver: name them for what they mean. A digit first, or not a number.
            if not self.allow_private_networks and host[:1].isdigit():
                address = legacy_ipv4_address(host)
                if address is not None and is_forbidden_address(address):
                    raise _Refused(address)
            # Awaited rather than entered with `async with`: one coroutine frame less for every
            # resumption of the request's task; the `finally` below releases the connection.
            response = await session.request(
                request.method,
                url,
                headers=headers,
                data=request.body or None,
                allow_redirects=False,
                timeout=timeout,
            )
            try:
                length = response.content_length
                if length is not None:
                    if (
                        length > limit
                        and response.status not in _NO_BODY_STATUSES
                        and request.method.upper() != "HEAD"
                    ):
                        response.close()
                        raise ResponseTooLarge(
                            f"{host}: response body of {length} bytes is over the {limit}-byte limit", host
                        )
                    body = await response.read()
                else:
                    chunks = []
                    size = 0
                    async for chunk in response.content.iter_any():
                        size += len(chunk)
                        if size > limit:
                            response.close()
                            raise ResponseTooLarge(f"{host}: response body is over the {limit}-byte limit", host)
                        chunks.append(chunk)
                    body = b"".join(chunks)
                return UpstreamResponse(
                    status=response.status,
                    headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers],
                    body=body,
                    elapsed=time.perf_counter() - started,
                )
            finally:
                response.release()
        except UpstreamError:
            raise
        except _Refused as refused:
            where = host if refused.address == host else f"{host} resolves to {refused.address}, which"
            raise ForbiddenAddress(
                f"{where} is not a public address; refused (allow_private_networks is off)", host
            ) from None
        except TimeoutError:  # asyncio.TimeoutError and all of aiohttp's timeout errors
            raise UpstreamTimeout(f"{host}: timed out", host) from None
        except (aiohttp.ClientError, OSError) as error:
            raise UpstreamConnectError(f"{host}: {_describe(error)}", host) from None

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _exact_timeout(total: float | None, connect: float) -> aiohttp.ClientTimeout:
    """Timeouts that fire when they say. aiohttp rounds a timeout over `ceil_threshold` (5 s by
    default) up to the next whole second, which would end a 6 s call up to a second after the
    caller's deadline: after the caller (or the REST bridge) has given up on it."""
    return aiohttp.ClientTimeout(total=total, sock_connect=connect, ceil_threshold=math.inf)


def _clean_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drops framing headers; spells a repeated name the way it was spelt first.

    aiohttp merges request headers case-sensitively, so ("X-A", "1"), ("x-a", "2") would lose "1";
    with one spelling both values go out, in order.
    """
    spelling: dict[str, str] = {}
    cleaned = []
    for name, value in headers:
        low = name.lower()
        if low in _FRAMING_HEADERS:
            continue
        cleaned.append((spelling.setdefault(low, name), value))
    return cleaned


def _describe(error: BaseException) -> str:
    """A short reason that never carries the URL (aiohttp's messages often do)."""
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return "DNS resolution failed"
    if isinstance(error, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError)):
        return "TLS handshake failed"
    if isinstance(error, aiohttp.ClientConnectorError):
        cause = error.os_error
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        return f"cannot connect ({cause.strerror or type(cause).__name__})"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "connection closed by the upstream before a response"
    if isinstance(error, aiohttp.ClientPayloadError):
        return "connection lost while reading the response body"
    if isinstance(error, aiohttp.ClientResponseError):
        return f"malformed response ({type(error).__name__})"
    if isinstance(error, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)):
        return "invalid upstream URL"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    if isinstance(error, OSError):
        return f"connection error ({error.strerror or type(error).__name__})"
    return f"connection error ({type(error).__name__})"
