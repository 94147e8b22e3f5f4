"""The forwarder against real HTTP servers on loopback.

The upstream here is a raw asyncio server: it records every request exactly as it came off the
wire (request line, header lines in order and case, body bytes) and answers with scripted raw
bytes, so both directions are checked byte for byte, and misbehaviour (stalls, resets, oversized
bodies) is easy to script.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import struct
from dataclasses import dataclass, field

import pytest

from headwater.upstream.forwarder import (
    ForbiddenAddress,
    Forwarder,
    ResponseTooLarge,
    UpstreamConnectError,
    UpstreamError,
    UpstreamRequest,
    UpstreamTimeout,
)
from headwater.upstream.ssrf import GuardedResolver, Refused, guarded_socket, is_forbidden_address

SECRET = "sk_live_SECRET123"


@dataclass
class Received:
    method: str
    target: str
    headers: list[tuple[str, str]]  # as on the wire: order, case and repeats kept
    body: bytes

    def names(self) -> list[str]:
        return [name.lower() for name, _ in self.headers]

    def get(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]


def response(status: str = "200 OK", headers: list[tuple[str, str]] = (), body: bytes = b"") -> bytes:
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    if not any(n.lower() in ("content-length", "transfer-encoding") for n, _ in headers):
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode("latin-1") + b"\r\n" + body


@dataclass
class Upstream:
    """Routes by path (query stripped) to a scripted action; records requests and connections."""

    routes: dict = field(default_factory=dict)
    requests: list[Received] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    server: asyncio.AbstractServer | None = None

    def url(self, target: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{target}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head[:-4].decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = []
                for line in lines[1:]:
                    name, value = line.split(":", 1)
                    headers.append((name, value.strip()))
                lengths = [v for n, v in headers if n.lower() == "content-length"]
                body = await reader.readexactly(int(lengths[0])) if lengths else b""
                received = Received(method, target, headers, body)
                self.requests.append(received)
                action = self.routes.get(target.split("?", 1)[0], response("404 Not Found"))
                if isinstance(action, bytes):
                    writer.write(action)
                    await writer.drain()
                elif await action(received, writer) == "close":
                    return
        except asyncio.CancelledError:
            pass  # a stalling script still asleep when the loop shuts down
        finally:
            writer.close()

    async def start(self) -> Upstream:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def upstream():
    server = await Upstream().start()
    yield server
    await server.stop()


@pytest.fixture
async def forwarder():
    # Tests talk to loopback, so the SSRF guard is off here; the guard has its own tests below.
    forwarder = Forwarder(allow_private_networks=True, max_response_bytes=64 * 1024, connect_timeout=2.0)
    yield forwarder
    await forwarder.aclose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -------------------------------------------------------------------------------------------------
# Bytes and headers, both ways


async def test_exact_bytes_and_headers_both_ways(upstream, forwarder):
    request_body = bytes(range(256)) + b"\r\n\r\n\x00tail"
    response_body = bytes(reversed(range(256))) * 3 + b"\x00\xff"
    upstream.routes["/v1/charges"] = response(
        "201 Created",
        [
            ("Content-Type", "application/octet-stream"),
            ("Set-Cookie", "a=1; Path=/"),
            ("X-Request-Id", "req_42"),
            ("Set-Cookie", "b=2; Path=/; HttpOnly"),
        ],
        response_body,
    )
    sent = [
        ("Authorization", f"Bearer {SECRET}"),
        ("Content-Type", "application/x-custom"),
        ("X-Multi", "one"),
        ("X-Multi", "two"),
        ("Idempotency-Key", "k-1"),
        ("x-multi", "three"),  # a repeat in another case goes out with the first spelling
    ]
    result = await forwarder.send(
        UpstreamRequest("POST", upstream.url("/v1/charges"), sent, request_body, timeout=5)
    )

    assert result.status == 201
    assert result.body == response_body
    assert result.elapsed > 0
    assert [h for h in result.headers if h[0].lower() == "set-cookie"] == [
        ("Set-Cookie", "a=1; Path=/"),
        ("Set-Cookie", "b=2; Path=/; HttpOnly"),
    ]
    assert ("X-Request-Id", "req_42") in result.headers
    assert ("Content-Length", str(len(response_body))) in result.headers

    [got] = upstream.requests
    assert got.method == "POST"
    assert got.target == "/v1/charges"
    assert got.body == request_body
    # Exactly the given headers (order, case, repeats), plus Host and Content-Length.
    assert [h for h in got.headers if h[0].lower() not in ("host", "content-length")] == [
        *sent[:-1], ("X-Multi", "three")
    ]
    assert got.get("host") == [f"127.0.0.1:{upstream.port}"]
    assert got.get("content-length") == [str(len(request_body))]


async def test_no_default_headers(upstream, forwarder):
    upstream.routes["/get"] = response(body=b"ok")
    upstream.routes["/post"] = response(body=b"ok")
    await forwarder.send(UpstreamRequest("GET", upstream.url("/get"), [("X-Only", "1")]))
    await forwarder.send(UpstreamRequest("POST", upstream.url("/post"), [], b"{}"))
    await forwarder.send(UpstreamRequest("DELETE", upstream.url("/post"), []))

    get, post, delete = upstream.requests
    assert get.names() == ["host", "x-only"]
    assert post.names() == ["host", "content-length"]  # no Content-Type, User-Agent, Accept...
    assert post.get("content-length") == ["2"]
    assert set(delete.names()) <= {"host", "content-length"}
    assert delete.get("content-length") in ([], ["0"])


async def test_caller_framing_headers_are_recomputed(upstream, forwarder):
    upstream.routes["/p"] = response(body=b"ok")
    headers = [("Content-Length", "999"), ("Connection", "close"), ("Transfer-Encoding", "chunked"), ("X-A", "1")]
    for _ in range(2):
        result = await forwarder.send(UpstreamRequest("PUT", upstream.url("/p"), headers, b"abc", timeout=5))
        assert result.status == 200
    for got in upstream.requests:
        assert got.body == b"abc"
        assert got.get("content-length") == ["3"]
        assert "transfer-encoding" not in got.names() and "connection" not in got.names()
    assert upstream.connections == 1  # and the connection stayed in sync and pooled


async def test_query_and_path_pass_verbatim(upstream, forwarder):
    upstream.routes["/v1/a%2Fb/c%20d"] = response(body=b"ok")
    target = "/v1/a%2Fb/c%20d?q=a%2Fb&tilde=%7e&plus=a+b&empty=&e=1&e=2&utf=%C3%A9&eq=a=b;c&flag&upper=%2f%3F"
    await forwarder.send(UpstreamRequest("GET", upstream.url(target), []))
    assert upstream.requests[0].target == target


async def test_gzip_body_passes_through_undecoded(upstream, forwarder):
    plain = b'{"data": "' + b"x" * 5000 + b'"}'
    compressed = gzip.compress(plain)
    upstream.routes["/gz"] = response(
        headers=[("Content-Type", "application/json"), ("Content-Encoding", "gzip")], body=compressed
    )
    result = await forwarder.send(
        UpstreamRequest("GET", upstream.url("/gz"), [("Accept-Encoding", "gzip")], timeout=5)
    )
    assert result.body == compressed
    assert ("Content-Encoding", "gzip") in result.headers
    assert ("Content-Length", str(len(compressed))) in result.headers
    assert upstream.requests[0].get("accept-encoding") == ["gzip"]


async def test_chunked_response_is_read_whole(upstream, forwarder):
    chunks = [b"hello ", b"\x00\x01binary", b" world"]
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    upstream.routes["/chunked"] = response(headers=[("Transfer-Encoding", "chunked")], body=body)
    result = await forwarder.send(UpstreamRequest("GET", upstream.url("/chunked"), []))
    assert result.body == b"".join(chunks)


async def test_head_with_a_large_declared_length(upstream, forwarder):
    big = forwarder.max_response_bytes * 10
    upstream.routes["/file"] = f"HTTP/1.1 200 OK\r\nContent-Length: {big}\r\n\r\n".encode()
    result = await forwarder.send(UpstreamRequest("HEAD", upstream.url("/file"), [], timeout=5))
    assert result.status == 200 and result.body == b""
    assert ("Content-Length", str(big)) in result.headers


async def test_redirects_are_not_followed(upstream, forwarder):
    upstream.routes["/old"] = response("302 Found", [("Location", "/new")], b"moved")
    upstream.routes["/new"] = response(body=b"followed!")
    result = await forwarder.send(UpstreamRequest("GET", upstream.url("/old"), []))
    assert result.status == 302
    assert ("Location", "/new") in result.headers
    assert result.body == b"moved"
    assert [r.target for r in upstream.requests] == ["/old"]


async def test_no_cookies_kept_between_requests(upstream, forwarder):
    upstream.routes["/login"] = response(headers=[("Set-Cookie", "session=tenant-a; Path=/")], body=b"")
    upstream.routes["/me"] = response(body=b"")
    await forwarder.send(UpstreamRequest("GET", upstream.url("/login"), []))
    await forwarder.send(UpstreamRequest("GET", upstream.url("/me"), []))
    assert "cookie" not in upstream.requests[1].names()


async def test_keep_alive_reuses_the_connection(upstream, forwarder):
    upstream.routes["/ka"] = response(body=b"ok")
    for _ in range(5):
        await forwarder.send(UpstreamRequest("GET", upstream.url("/ka"), []))
    assert len(upstream.requests) == 5
    assert upstream.connections == 1


async def test_concurrent_requests(upstream, forwarder):
    async def echo(received, writer):
        await asyncio.sleep(0.01)
        writer.write(response(body=received.target.encode()))

    upstream.routes["/echo"] = echo
    results = await asyncio.gather(
        *(forwarder.send(UpstreamRequest("GET", upstream.url(f"/echo?i={i}"), [], timeout=5)) for i in range(50))
    )
    assert [r.body for r in results] == [f"/echo?i={i}".encode() for i in range(50)]


# -------------------------------------------------------------------------------------------------
# Failures


async def test_timeout_before_response(upstream, forwarder):
    async def stall(received, writer):
        await asyncio.sleep(3)
        return "close"

    upstream.routes["/slow"] = stall
    started = asyncio.get_running_loop().time()
    with pytest.raises(UpstreamTimeout) as caught:
        await forwarder.send(UpstreamRequest("GET", upstream.url(f"/slow?key={SECRET}"), [], timeout=0.3))
    assert asyncio.get_running_loop().time() - started < 2
    assert "127.0.0.1" in str(caught.value) and SECRET not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_no_time_left(upstream, forwarder):
    for seconds in (0, -1.5):
        with pytest.raises(UpstreamTimeout):
            await forwarder.send(UpstreamRequest("GET", upstream.url("/x"), [], timeout=seconds))
    assert upstream.requests == []


async def test_timeout_covers_the_body(upstream, forwarder):
    async def stall_body(received, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        await asyncio.sleep(3)
        return "close"

    upstream.routes["/slow-body"] = stall_body
    with pytest.raises(UpstreamTimeout):
        await forwarder.send(UpstreamRequest("GET", upstream.url("/slow-body"), [], timeout=0.3))


async def test_connection_refused(forwarder):
    url = f"http://127.0.0.1:{free_port()}/v1/x?token={SECRET}"
    with pytest.raises(UpstreamConnectError) as caught:
        await forwarder.send(UpstreamRequest("GET", url, [], timeout=5))
    message = str(caught.value)
    assert "127.0.0.1" in message and "refused" in message
    assert SECRET not in message and "/v1/x" not in message
    assert caught.value.host == "127.0.0.1"


async def test_dns_failure_is_a_connect_error(forwarder):
    with pytest.raises(UpstreamConnectError) as caught:
        await forwarder.send(UpstreamRequest("GET", "http://no-such-host.invalid/x", [], timeout=5))
    assert "no-such-host.invalid" in str(caught.value)


async def test_connection_reset_mid_response(upstream, forwarder):
    async def reset(received, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 50000\r\n\r\n" + b"x" * 1000)
        await writer.drain()
        await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        writer.transport.abort()
        return "close"

    async def closed_early(received, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 50000\r\n\r\n" + b"x" * 1000)
        await writer.drain()
        return "close"

    async def closed_before_status(received, writer):
        return "close"

    upstream.routes["/reset"] = reset
    upstream.routes["/closed-early"] = closed_early
    upstream.routes["/closed-before-status"] = closed_before_status
    for path in ("/reset", "/closed-early", "/closed-before-status"):
        with pytest.raises(UpstreamConnectError) as caught:
            await forwarder.send(UpstreamRequest("POST", upstream.url(f"{path}?k={SECRET}"), [], b"x", timeout=5))
        assert SECRET not in str(caught.value)


async def test_tls_failure_is_a_connect_error(forwarder, tmp_path):
    import datetime
    import ipaddress
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self-signed.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    tls = Upstream()
    tls.server = await asyncio.start_server(tls._handle, "127.0.0.1", 0, ssl=context)
    tls.port = tls.server.sockets[0].getsockname()[1]
    tls.routes["/x"] = response(body=b"ok")
    try:
        with pytest.raises(UpstreamConnectError) as caught:
            await forwarder.send(
                UpstreamRequest("GET", f"https://127.0.0.1:{tls.port}/x?k={SECRET}", [], timeout=5)
            )
        assert "TLS" in str(caught.value) and SECRET not in str(caught.value)
        assert tls.requests == []
    finally:
        await tls.stop()


async def test_malformed_response_is_a_connect_error(upstream, forwarder):
    upstream.routes["/garbage"] = b"NOT HTTP AT ALL\r\n\r\n"
    with pytest.raises(UpstreamConnectError):
        await forwarder.send(UpstreamRequest("POST", upstream.url("/garbage"), [], b"x", timeout=5))


async def test_response_too_large(upstream, forwarder):
    limit = forwarder.max_response_bytes
    upstream.routes["/at-limit"] = response(body=b"a" * limit)
    upstream.routes["/declared"] = response(body=b"a" * (limit + 1))
    chunk = b"b" * 10_000
    upstream.routes["/chunked"] = response(
        headers=[("Transfer-Encoding", "chunked")],
        body=b"%x\r\n%s\r\n" % (len(chunk), chunk) * 10 + b"0\r\n\r\n",
    )

    async def close_delimited(received, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"c" * (limit * 2))
        await writer.drain()
        return "close"

    upstream.routes["/close-delimited"] = close_delimited

    ok = await forwarder.send(UpstreamRequest("GET", upstream.url("/at-limit"), [], timeout=5))
    assert len(ok.body) == limit
    for path in ("/declared", "/chunked", "/close-delimited"):
        with pytest.raises(ResponseTooLarge) as caught:
            await forwarder.send(UpstreamRequest("GET", upstream.url(f"{path}?k={SECRET}"), [], timeout=5))
        assert "127.0.0.1" in str(caught.value) and SECRET not in str(caught.value)
    # The pool is not poisoned by the dropped connections.
    again = await forwarder.send(UpstreamRequest("GET", upstream.url("/at-limit"), [], timeout=5))
    assert again.body == b"a" * limit


async def test_not_an_http_url(forwarder):
    for url in ("ftp://example.com/file", "/relative/path", "not a url"):
        with pytest.raises(UpstreamError):
            await forwarder.send(UpstreamRequest("GET", url, []))


# -------------------------------------------------------------------------------------------------
# SSRF guard


async def test_loopback_is_refused_and_the_upstream_sees_nothing(upstream):
    upstream.routes["/admin"] = response(body=b"secret admin page")
    guarded = Forwarder()  # allow_private_networks=False
    try:
        for host in ("127.0.0.1", "localhost", "LOCALHOST"):
            with pytest.raises(ForbiddenAddress) as caught:
                await guarded.send(UpstreamRequest("GET", upstream.url(f"/admin?token={SECRET}", host), [], timeout=5))
            message = str(caught.value)
            assert host in message
            assert SECRET not in message and "/admin" not in message
            assert caught.value.host == host
        for url in (
            f"http://[::1]:{upstream.port}/admin",
            f"http://[::ffff:127.0.0.1]:{upstream.port}/admin",
            f"http://0.0.0.0:{upstream.port}/admin",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/",
            "http://192.168.0.1/",
        ):
            with pytest.raises(ForbiddenAddress):
                await guarded.send(UpstreamRequest("GET", url, [], timeout=5))
    finally:
        await guarded.aclose()
    assert upstream.requests == []
    assert upstream.connections == 0


async def test_loopback_spelt_in_a_legacy_numeric_form_is_refused(upstream):
    # The C library reads "127.1", "2130706433" and "0x7f.1" as 127.0.0.1; aiohttp refuses to
    # connect to such hosts itself, before our resolver sees them: the guard names them first.
    guarded = Forwarder()
    try:
        for host in ("127.1", "2130706433", "0x7f000001", "017700000001", "127.0.1"):
            with pytest.raises(ForbiddenAddress) as caught:
                await guarded.send(UpstreamRequest("GET", upstream.url("/admin", host), [], timeout=5))
            assert caught.value.host == host
            assert str(caught.value).startswith(f"{host} resolves to 127.0.0.1, which is not a public address")
    finally:
        await guarded.aclose()
    assert upstream.connections == 0


async def test_allow_private_networks_reaches_loopback(upstream):
    upstream.routes["/x"] = response(body=b"ok")
    open_forwarder = Forwarder(allow_private_networks=True)
    try:
        for host in ("127.0.0.1", "localhost"):
            result = await open_forwarder.send(UpstreamRequest("GET", upstream.url("/x", host), [], timeout=5))
            assert result.body == b"ok"
    finally:
        await open_forwarder.aclose()


def test_the_socket_check_sees_the_address_actually_connected_to():
    # The connector's last word, whatever resolved the address (IP literal, cache, re-bound DNS).
    for address in ("127.0.0.1", "10.1.2.3", "169.254.169.254"):
        with pytest.raises(Refused):
            guarded_socket((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 80)))
    with pytest.raises(Refused):
        guarded_socket((socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::ffff:127.0.0.1", 80, 0, 0)))
    sock = guarded_socket((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 80)))
    sock.close()


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1",
        "169.254.169.254", "169.254.0.1", "0.0.0.0", "100.64.0.1", "100.100.100.200", "224.0.0.1",
        "239.255.255.250", "240.0.0.1", "255.255.255.255", "192.0.2.1",
        "::1", "::", "fe80::1", "fe80::1%lo", "fc00::1", "fd00:ec2::254", "ff02::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1",
        "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "2002:a9fe:a9fe::1",
        "not-an-address",
    ],
)
def test_forbidden_addresses(address):
    assert is_forbidden_address(address)


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "93.184.215.14", "172.32.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses(address):
    assert not is_forbidden_address(address)


async def test_the_resolver_refuses_a_name_with_any_private_answer():
    class Rebinding:
        def __init__(self, answers):
            self.answers = answers

        async def resolve(self, host, port=0, family=socket.AF_INET):
            return [
                {"hostname": host, "host": a, "port": port, "family": family, "proto": 0, "flags": 0}
                for a in self.answers
            ]

        async def close(self):
            pass

    resolver = GuardedResolver()
    resolver._inner = Rebinding(["93.184.215.14", "127.0.0.1"])
    with pytest.raises(Refused) as caught:
        await resolver.resolve("api.example.com", 443)
    assert caught.value.address == "127.0.0.1"
    resolver._inner = Rebinding(["93.184.215.14"])
    assert [r["host"] for r in await resolver.resolve("api.example.com", 443)] == ["93.184.215.14"]
