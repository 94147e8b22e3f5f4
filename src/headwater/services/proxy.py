"""ProxyService: any request to the upstream API, auth injected, paced, answered as it came.

Over gRPC callers use `Forward`; over REST the bridge's raw routes (`rest_routes`). Both hand a
`Call` to the one `ProxyServicer.forward`, so they share auth, pacing, errors and the log line;
only the presentation differs (gRPC puts the answer's status, headers and bytes in a
ForwardResponse, REST sends them back as they are).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii

import grpc

from headwater.errors import ApiError, invalid, raise_if_invalid
from headwater.inputs import request_violations
from headwater.rest import RawRequest, RawResponse
from headwater.services._common import Backend
from headwater.upstream.accounts import UpstreamAccount
from headwater.upstream.gateway import Sent, UpstreamCall, answer_margin
from headwater.upstream.requests import (
    HOST_NOT_PERMITTED,
    HostNotPermitted,
    LinkRewriter,
    UnsafeRequest,
    inbound_headers,
    outbound_headers,
    upstream_url,
)
from headwater.v1 import proxy_pb2, proxy_pb2_grpc

log = logging.getLogger("headwater.proxy")

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
DEFAULT_TIMEOUT = 30.0
REQUEST_ID_HEADER = "X-Headwater-Request-Id"
BUDGET_WAIT_HEADER = "X-Headwater-Budget-Wait-Ms"

# The `route` label of the proxy's metrics, by ForwardRequest's target.
ROUTES = {"sync_id": "sync", "credential_id": "credential", "connected_user": "connected_user"}

# Request ids: 32 hex digits, a random per-process prefix and a counter (unique, and cheaper than
# a uuid4 on every request).
_ID_PREFIX = secrets.token_hex(8)
_ID_COUNTER = itertools.count()


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


@dataclass(slots=True)
class Call:
    """One request to forward, as either front hands it over (ForwardRequest's fields)."""

    method: str
    path: str  # relative to the credential's base URL, or a fully-qualified URL
    query: str  # without the "?"
    headers: list[tuple[str, str]]  # the caller's, unfiltered
    body: bytes
    link_base: str = ""
    rewrite_body_urls: bool = False
    route: str = ""  # whose account: "sync", "credential" or "connected_user" (a metrics label)


class ProxyServicer(proxy_pb2_grpc.ProxyServiceServicer):
    def __init__(self, backend: Backend):
        self.backend = backend

    async def Forward(self, request: proxy_pb2.ForwardRequest, context) -> proxy_pb2.ForwardResponse:
        call = Call(
            method=request.method,
            path=request.path,
            query=request.query,
            headers=[(h.name, h.value) for h in request.headers],
            body=request.body,
            link_base=request.link_base,
            rewrite_body_urls=request.rewrite_body_urls,
            route=ROUTES.get(request.WhichOneof("target"), "none"),
        )
        answer = await self.forward(call, context, lambda: self.account(request, context))
        return proxy_pb2.ForwardResponse(
            status=answer.status,
            headers=[proxy_pb2.Header(name=n, value=v) for n, v in answer.headers],
            body=answer.body,
        )

    async def forward(
        self, call: Call, context, find_account: Callable[[], Awaitable[UpstreamAccount]]
    ) -> RawResponse:
        """What both fronts run: whose credential (`find_account`, which also authenticates the
        caller), then the request, paced and authorized, then the upstream's answer (status,
        headers, bytes: what REST sends back as it is).

        Whatever happens, the call leaves one log line and its answer carries its request id
        (REQUEST_ID_HEADER), Headwater's own answers too (404 unknown sync, 403 private address,
        502 unreachable, 503 shared pacer unreachable...): the ApiError raised gets the header,
        which REST sends as a header and gRPC as trailing metadata."""
        loop = asyncio.get_running_loop()
        line = _LogLine(new_request_id(), call.method.upper(), loop.time())
        try:
            # One frame for the whole call (not a helper coroutine): it is resumed on every socket event.
            remaining = context.time_remaining()  # None: a gRPC caller set no deadline; 0: it has passed
            if remaining is None:
                remaining = DEFAULT_TIMEOUT
            deadline = line.started + remaining - answer_margin(remaining)

            account = line.account = await find_account()
            method = line.method
            if method not in METHODS:
                raise invalid("method", f"must be one of {', '.join(sorted(METHODS))}")
            try:
                headers = outbound_headers(call.headers)
                sent = await self.backend.upstream.send(account, UpstreamCall(
                    method=method, path=call.path, query=call.query, headers=headers, body=call.body,
                    deadline=deadline,
                ))
            except HostNotPermitted:
                raise ApiError(
                    grpc.StatusCode.INVALID_ARGUMENT, HOST_NOT_PERMITTED,
                    field_violations=[("path", HOST_NOT_PERMITTED)],
                ) from None
            except UnsafeRequest as unsafe:
                raise invalid("path" if "header" not in str(unsafe) else "headers", str(unsafe)) from None
            line.sent = sent
            response, account = sent.response, sent.account

            # Links point back at the proxy if the caller gave a link base; a query key never comes back.
            links = LinkRewriter(account.base_url, account.permitted_hosts, call.link_base, account.query_key)
            answer_headers = inbound_headers(response.headers, links)
            body = response.body
            if (call.rewrite_body_urls or links.hidden) and _is_plain_json(answer_headers):
                body = links.json_body(body, point_back=call.rewrite_body_urls)
            answer_headers += budget_headers(sent, {name.lower() for name, _ in answer_headers})
            answer_headers.append((REQUEST_ID_HEADER, line.request_id))
            line.status = response.status
            answer = RawResponse(response.status, answer_headers, body)
        except ApiError as error:
            error.headers = {**error.headers, REQUEST_ID_HEADER: line.request_id}
            line.status, line.error = error.http_status, error.code.name
            raise
        except asyncio.CancelledError:
            line.status = 499  # the caller went away, or the server stopped, before the answer
            raise
        except Exception:
            log.exception("proxy request %s failed", line.request_id)
            line.status, line.error = 500, grpc.StatusCode.INTERNAL.name
            raise ApiError(
                grpc.StatusCode.INTERNAL, "internal error", headers={REQUEST_ID_HEADER: line.request_id}
            ) from None
        finally:
            log.info(line.render(call.path, loop.time()))
            self.backend.metrics.proxied(call.route, line.status)
        return answer

    async def account(self, request: proxy_pb2.ForwardRequest, context) -> UpstreamAccount:
        """The account the request's target names (authenticating the caller on the way)."""
        target = request.WhichOneof("target")
        if target == "connected_user":
            return await self.backend.connected_users.account(request.connected_user, context)
        org_id = await self.backend.auth.org_id(context)  # an anonymous caller learns nothing more
        if target == "sync_id":
            return await self.backend.accounts.for_sync(org_id, request.sync_id)
        if target == "credential_id":
            return await self.backend.accounts.for_credential(org_id, request.credential_id)
        raise invalid("target", "give one of sync_id, credential_id or connected_user")


@dataclass(slots=True)
class _LogLine:
    """The one log line of a proxied call, filled in as the call goes (see `render`)."""

    request_id: str
    method: str
    started: float  # on the loop's clock
    account: UpstreamAccount | None = None  # once known
    sent: Sent | None = None  # once the upstream answered
    status: int = 0  # the answer's HTTP status: the upstream's, or that of Headwater's own error
    error: str = ""  # the gRPC code of Headwater's own error, if the answer is one

    def render(self, path: str, now: float) -> str:
        """JSON without secrets: the host and path, never the query (`path`: the call's, for the
        line of a call that never reached the upstream). Written out field by field: it is on every
        proxied call, and this is a quarter of json.dumps's time for the same text."""
        sent = self.sent
        account = sent.account if sent else self.account
        host, path = _host_and_path(sent.url) if sent else _intended_host_and_path(account, path)
        line = (
            f'{{"event": "proxy", "request_id": {_json(self.request_id)}, '
            f'"org_id": {_json(account.org_id if account else None)}, '
            f'"credential_id": {_json(account.credential_id if account else None)}, '
            f'"method": {_json(self.method)}, "host": {_json(host)}, "path": {_json(path)}, '
            f'"status": {self.status}'
        )
        if sent is not None:
            line += (f', "attempts": {sent.attempts}, "waited_ms": {round(sent.waited * 1000, 1)!r}, '
                     f'"upstream_ms": {round(sent.response.elapsed * 1000, 1)!r}')
        if self.error:
            line += f', "error": {_json(self.error)}'
        return line + f', "total_ms": {round((now - self.started) * 1000, 1)!r}}}'


def _json(value: str | None) -> str:
    """A JSON string (or null), as json.dumps writes it."""
    return "null" if value is None else encode_basestring_ascii(value)


def budget_headers(sent: Sent, present: set[str]) -> list[tuple[str, str]]:
    """The credential's budget as this request found it, for the caller: the IETF fields in the
    structured-field form of draft-ietf-httpapi-ratelimit-headers-10 (RateLimit-Policy: each
    window as a policy, q requests per w seconds; RateLimit: r remaining after this request, t
    seconds until the oldest start counted leaves the window), and the milliseconds this request
    waited for its turn. A field the upstream sent itself (`present`: lower-case names) is left as
    the upstream sent it, and ours is not added.

        RateLimit-Policy: "default";q=100;w=10, "86400s";q=250000;w=86400
        RateLimit: "default";r=42;t=3, "86400s";r=249958;t=86397
        X-Headwater-Budget-Wait-Ms: 0
    """
    out = []
    windows = sent.permit.windows if sent.permit is not None else ()
    if windows:
        policy, names = _policy(tuple((w.limit, w.interval) for w in windows))
        if "ratelimit-policy" not in present:
            out.append(("RateLimit-Policy", policy))
        if "ratelimit" not in present:
            # t in whole seconds, rounded up from tenths (the pacing margin's milliseconds do not make 10 s 11)
            state = ", ".join(f'"{name}";r={w.remaining};t={math.ceil(round(w.reset, 1))}' for name, w in zip(names, windows))
            out.append(("RateLimit", state))
    if BUDGET_WAIT_HEADER.lower() not in present:
        out.append((BUDGET_WAIT_HEADER, str(round(sent.waited * 1000))))
    return out


@functools.lru_cache(maxsize=1024)
def _policy(windows: tuple[tuple[int, float], ...]) -> tuple[str, tuple[str, ...]]:
    """RateLimit-Policy's value for these (limit, interval) windows, and the windows' names (the
    same for every request of a budget: worked out once)."""
    names = ("default", *(f"{math.ceil(interval)}s" for _, interval in windows[1:]))  # cached: immutable
    policy = ", ".join(f'"{name}";q={limit};w={math.ceil(interval)}' for name, (limit, interval) in zip(names, windows))
    return policy, names


def _intended_host_and_path(account: UpstreamAccount | None, path: str) -> tuple[str | None, str | None]:
    """Where a call that never got an upstream answer was going, if it got that far."""
    if account is None:
        return None, None
    try:
        return _host_and_path(upstream_url(account.base_url, path, "", account.permitted_hosts))
    except UnsafeRequest:
        return None, None


def _host_and_path(url: str) -> tuple[str, str]:
    """urlsplit(url)'s hostname and path, for the log line, without urlsplit's cost."""
    netloc, _, path = url.partition("://")[2].partition("/")
    netloc = netloc.rpartition("@")[2]
    host = netloc[1 : netloc.find("]")] if netloc.startswith("[") else netloc.partition(":")[0]
    return host.lower(), "/" + path.partition("?")[0].partition("#")[0]


def _is_plain_json(headers: list[tuple[str, str]]) -> bool:
    """JSON, and not compressed (a compressed body is passed on untouched)."""
    names = {n.lower(): v.lower() for n, v in headers}
    return "json" in names.get("content-type", "") and names.get("content-encoding", "identity") == "identity"


# --- REST: the raw routes -----------------------------------------------------------------------

REWRITE_BODY_HEADER = "x-headwater-rewrite-body-urls"
RAW_RESPONSE_HEADER = "x-paragon-use-raw-response"


def rest_routes(servicer: ProxyServicer):
    """The proxy's REST paths, as raw routes of the bridge (any verb, bytes in and out)."""

    def route(template: str, target_of: Callable[[dict[str, str]], proxy_pb2.ForwardRequest], present=None):
        # Links point back at this route: the request's path up to where {path} begins, as the
        # caller spelt it (so that it routes here again).
        prefix_segments = template[: template.index("{path=**}")].count("/")

        def handle(http: RawRequest) -> Awaitable[RawResponse]:
            params = http.path_params
            # The ids in the path are what a gRPC caller's ForwardRequest names, checked the same way.
            target = target_of(params)
            raise_if_invalid(request_violations(target))
            headers = dict(http.headers)  # lower-case names
            origin = f"{headers.get('x-forwarded-proto', 'http')}://{headers.get('host', '127.0.0.1')}"
            # The path goes upstream as the caller spelt it: the bridge's {path=**} is decoded
            # (grpc-gateway's rule), and "100%25" decoded is "100%", another request.
            parts = http.path.split("/", prefix_segments)
            call = Call(
                method=http.method,
                path=parts[prefix_segments] if len(parts) > prefix_segments else "",
                query=http.query_string.decode("latin-1"),
                headers=http.headers,
                body=http.body,
                link_base=origin + "/".join(parts[:prefix_segments]) + "/",
                rewrite_body_urls=_truthy(headers.get(REWRITE_BODY_HEADER)),
                route=ROUTES[target.WhichOneof("target")],
            )
            answer = servicer.forward(call, http.context, lambda: servicer.account(target, http.context))
            # The forward's own coroutine when the answer goes back as it is (no frame of ours
            # between the bridge and the proxy while the request runs).
            return answer if present is None else _presented(answer, headers, present)

        return (("*",), template, handle)

    def connected_user(params):
        return proxy_pb2.ForwardRequest(connected_user=proxy_pb2.ConnectedUserTarget(
            project_id=params["project_id"],
            integration=params.get("integration", ""),
            integration_id=params.get("integration_id", ""),
        ))

    return [
        route("/v1/proxy/sync/{sync_id}/{path=**}",
              lambda params: proxy_pb2.ForwardRequest(sync_id=params["sync_id"])),
        route("/v1/proxy/credential/{credential_id}/{path=**}",
              lambda params: proxy_pb2.ForwardRequest(credential_id=params["credential_id"])),
        route("/projects/{project_id}/sdk/proxy/{integration}/{path=**}", connected_user, _connected_user_answer),
        route("/projects/{project_id}/sdk/proxy/custom/{integration_id}/{path=**}", connected_user,
              _connected_user_answer),
    ]


async def _presented(answer: Awaitable[RawResponse], request_headers: dict[str, str], present) -> RawResponse:
    return present(request_headers, await answer)


def _connected_user_answer(request_headers: dict[str, str], answer: RawResponse) -> RawResponse:
    """The connected-user form answers with the upstream's JSON body, as Paragon's SDK proxy does;
    with `X-Paragon-Use-Raw-Response: 1`, with the raw answer (status, every header, bytes)."""
    headers = answer.headers
    if _truthy(request_headers.get(RAW_RESPONSE_HEADER)):
        return RawResponse(answer.status, headers, answer.body)
    content_type = next((v for n, v in headers if n.lower() == "content-type"), "")
    encoded = any(n.lower() == "content-encoding" and v.lower() != "identity" for n, v in headers)
    if answer.body and ("json" not in content_type.lower() or encoded):
        raise ApiError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"the upstream answered {answer.status} with {content_type or 'no content type'}, not JSON; "
            "send the header X-Paragon-Use-Raw-Response: 1 to receive raw responses (files, text)",
            headers={REQUEST_ID_HEADER: dict(headers)[REQUEST_ID_HEADER]},
        )
    kept = [(n, v) for n, v in headers if n.lower() in ("content-type", "x-headwater-request-id", "retry-after")]
    return RawResponse(answer.status, kept, answer.body)


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("1", "true", "yes")
