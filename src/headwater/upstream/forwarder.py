"""The one way Headwater sends an HTTP request upstream.

    forwarder = Forwarder()                                   # one per process
    response = await forwarder.send(UpstreamRequest("GET", "https://api.stripe.com/v1/charges?limit=3",
                                                     [("authorization", "Bearer sk_...")], timeout=30))
    await forwarder.aclose()

It is the real `Transport` (transport.py); tests of the pipeline may use a `MockTransport` instead.

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
- SSRF guard (unless `allow_private_networks`): ssrf.py's resolver and socket check, so no
  private, loopback, link-local or otherwise non-public address is ever connected to.
- errors name the host only, never the URL (queries may carry secrets), and do not chain the
  engine's exception (whose text often carries the URL).
"""

from __future__ import annotations

import functools
import math
import ssl
import time

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from headwater.upstream.ssrf import GuardedResolver, Refused, guarded_socket, is_forbidden_address, legacy_ipv4_address
from headwater.upstream.transport import (
    ForbiddenAddress,
    ResponseTooLarge,
    UpstreamConnectError,
    UpstreamError,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamTimeout,
)

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
            resolver=GuardedResolver() if guarded else None,
            socket_factory=guarded_socket if guarded else None,
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
                    raise Refused(address)
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
        except Refused as refused:
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
