"""ProxyService: any request to the upstream API, auth injected, paced, answered as it came.

Over gRPC callers use `Forward`. Over REST the bridge's raw routes (`rest_routes`) turn the HTTP
request into the same ForwardRequest and call the same `Forward`, so both fronts share auth,
pacing and errors; only the presentation of the answer differs (REST answers with the upstream's
status, headers and bytes themselves).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from urllib.parse import quote, urlsplit

import grpc

from headwater.errors import ApiError, invalid
from headwater.rest import RawRequest, RawResponse
from headwater.services._common import Backend
from headwater.upstream.requests import (
    HOST_NOT_PERMITTED,
    HostNotPermitted,
    LinkRewriter,
    UnsafeRequest,
    inbound_headers,
    outbound_headers,
)
from headwater.v1 import proxy_pb2, proxy_pb2_grpc

log = logging.getLogger("headwater.proxy")

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
DEFAULT_TIMEOUT = 30.0
REQUEST_ID_HEADER = "X-Headwater-Request-Id"


class ProxyServicer(proxy_pb2_grpc.ProxyServiceServicer):
    def __init__(self, backend: Backend):
        self.backend = backend

    async def Forward(self, request: proxy_pb2.ForwardRequest, context) -> proxy_pb2.ForwardResponse:
        loop = asyncio.get_running_loop()
        started = loop.time()
        request_id = uuid.uuid4().hex
        deadline = started + (context.time_remaining() or DEFAULT_TIMEOUT)

        account = await self._account(request, context)
        method = request.method.upper()
        if method not in METHODS:
            raise invalid("method", f"must be one of {', '.join(sorted(METHODS))}")
        try:
            headers = outbound_headers((h.name, h.value) for h in request.headers)
            sent = await self.backend.upstream.send(
                account, method, request.path, request.query, headers, request.body, deadline
            )
        except HostNotPermitted:
            raise ApiError(
                grpc.StatusCode.INVALID_ARGUMENT, HOST_NOT_PERMITTED,
                field_violations=[("path", HOST_NOT_PERMITTED)],
            ) from None
        except UnsafeRequest as unsafe:
            raise invalid("path" if "header" not in str(unsafe) else "headers", str(unsafe)) from None
        response, account = sent.response, sent.account

        answer_headers = inbound_headers(response.headers)
        body = response.body
        if request.link_base:
            rewriter = LinkRewriter(account.base_url, account.permitted_hosts, request.link_base)
            answer_headers = rewriter.headers(answer_headers)
            if request.rewrite_body_urls and _is_plain_json(answer_headers):
                body = rewriter.json_body(body)
        answer_headers.append((REQUEST_ID_HEADER, request_id))

        parts = urlsplit(sent.url)
        log.info(json.dumps({
            "event": "proxy", "request_id": request_id, "org_id": account.org_id,
            "credential_id": account.credential_id, "method": method, "host": parts.hostname,
            "path": parts.path, "status": response.status, "attempts": sent.attempts,
            "waited_ms": round(sent.waited * 1000, 1), "upstream_ms": round(response.elapsed * 1000, 1),
            "total_ms": round((loop.time() - started) * 1000, 1),
        }))
        return proxy_pb2.ForwardResponse(
            status=response.status,
            headers=[proxy_pb2.Header(name=n, value=v) for n, v in answer_headers],
            body=body,
        )

    async def _account(self, request, context):
        target = request.WhichOneof("target")
        if target == "sync_id":
            org_id = await self.backend.auth.org_id(context)
            return await self.backend.accounts.for_sync(org_id, request.sync_id)
        if target == "credential_id":
            org_id = await self.backend.auth.org_id(context)
            return await self.backend.accounts.for_credential(org_id, request.credential_id)
        if target == "connected_user":
            return await self.backend.connected_users.account(request.connected_user, context)
        await self.backend.auth.org_id(context)  # an anonymous caller learns nothing more
        raise invalid("target", "give one of sync_id, credential_id or connected_user")


def _is_plain_json(headers: list[tuple[str, str]]) -> bool:
    """JSON, and not compressed (a compressed body is passed on untouched)."""
    names = {n.lower(): v.lower() for n, v in headers}
    return "json" in names.get("content-type", "") and names.get("content-encoding", "identity") == "identity"


# --- REST: the raw routes -----------------------------------------------------------------------

REWRITE_BODY_HEADER = "x-headwater-rewrite-body-urls"
RAW_RESPONSE_HEADER = "x-paragon-use-raw-response"


def rest_routes(servicer: ProxyServicer):
    """The proxy's REST paths, as raw routes of the bridge (any verb, bytes in and out)."""

    def route(template: str, link_prefix: str, fill_target, present=None):
        async def handle(http: RawRequest) -> RawResponse:
            params = http.path_params
            request = proxy_pb2.ForwardRequest(
                method=http.method,
                path=params.get("path", ""),
                query=http.query_string.decode("latin-1"),
                headers=[proxy_pb2.Header(name=n, value=v) for n, v in http.headers],
                body=http.body,
                link_base=_origin(http) + link_prefix.format_map({k: quote(v, safe="") for k, v in params.items()}),
                rewrite_body_urls=_truthy(http, REWRITE_BODY_HEADER),
            )
            fill_target(request, params)
            answer = await servicer.Forward(request, http.context)
            if present:
                return present(http, answer)
            return RawResponse(answer.status, [(h.name, h.value) for h in answer.headers], answer.body)

        return (("*",), template, handle)

    def connected_user(request, params):
        request.connected_user.project_id = params["project_id"]
        request.connected_user.integration = params.get("integration", "")
        request.connected_user.integration_id = params.get("integration_id", "")

    return [
        route("/v1/proxy/sync/{sync_id}/{path=**}", "/v1/proxy/sync/{sync_id}/",
              lambda r, p: setattr(r, "sync_id", p["sync_id"])),
        route("/v1/proxy/credential/{credential_id}/{path=**}", "/v1/proxy/credential/{credential_id}/",
              lambda r, p: setattr(r, "credential_id", p["credential_id"])),
        route("/projects/{project_id}/sdk/proxy/{integration}/{path=**}",
              "/projects/{project_id}/sdk/proxy/{integration}/", connected_user, _connected_user_answer),
        route("/projects/{project_id}/sdk/proxy/custom/{integration_id}/{path=**}",
              "/projects/{project_id}/sdk/proxy/custom/{integration_id}/", connected_user, _connected_user_answer),
    ]


def _connected_user_answer(http: RawRequest, answer: proxy_pb2.ForwardResponse) -> RawResponse:
    """The connected-user form answers with the upstream's JSON body, as Paragon's SDK proxy does;
    with `X-Paragon-Use-Raw-Response: 1`, with the raw answer (status, every header, bytes)."""
    headers = [(h.name, h.value) for h in answer.headers]
    if _truthy(http, RAW_RESPONSE_HEADER):
        return RawResponse(answer.status, headers, answer.body)
    content_type = next((v for n, v in headers if n.lower() == "content-type"), "")
    encoded = any(n.lower() == "content-encoding" and v.lower() != "identity" for n, v in headers)
    if answer.body and ("json" not in content_type.lower() or encoded):
        raise ApiError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"the upstream answered {answer.status} with {content_type or 'no content type'}, not JSON; "
            "send the header X-Paragon-Use-Raw-Response: 1 to receive raw responses (files, text)",
        )
    kept = [(n, v) for n, v in headers if n.lower() in ("content-type", "x-headwater-request-id", "retry-after")]
    return RawResponse(answer.status, kept, answer.body)


def _origin(http: RawRequest) -> str:
    host = next((v for n, v in http.headers if n == "host"), "127.0.0.1")
    proto = next((v for n, v in http.headers if n == "x-forwarded-proto"), "http")
    return f"{proto}://{host}"


def _truthy(http: RawRequest, name: str) -> bool:
    return any(n == name and v.strip().lower() in ("1", "true", "yes") for n, v in http.headers)
