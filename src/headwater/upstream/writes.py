"""Writing one record upstream, as a collection's `write:` spec in catalogue.yaml says.

One mechanism for every provider: the spec gives the request (method, path with `{id}`), the
body's encoding (JSON, or Stripe's form with nested keys), where the answer keeps the record's id
and change time, whether to read the record back (Salesforce answers an update with 204), and
where an error answer keeps the upstream's message. A new collection is a catalogue entry.

    change = await write_record(upstream, account, collection, "update", "cus_1", {"name": "Paul"},
                                idempotency_key="k1", deadline=loop.time() + 30)
    change.upstream_id, change.data          # the record as the upstream now has it

The request goes through `Upstream.send`, so it shares the credential's budget with the proxy and
the sync engine, and its answer is classified there (outcomes.classify). A failed answer becomes
its outcome's documented error (`upstream_error`, outcomes.ERRORS): 400 "Salesforce validation
error: `Invalid email`", 504 "Salesforce API timed out", 429 with Retry-After for a rate limit
(GitHub's 403 with x-ratelimit-remaining: 0 too), ...
"""

from __future__ import annotations

import datetime
import email.utils
import json
from typing import Any
from urllib.parse import quote, urlencode

import grpc

from headwater.errors import ApiError
from headwater.store.models import utcnow
from headwater.store.records import Change
from headwater.upstream.accounts import UpstreamAccount
from headwater.upstream.catalogue import Collection, WriteRequest, WriteSpec
from headwater.upstream.gateway import Upstream, UpstreamCall, api_name
from headwater.upstream.outcomes import Kind, Outcome, answer_error, error_message, failure
from headwater.upstream.reading import ReadError, dig, fill_names, fill_strings, parse_time
from headwater.upstream.requests import UnsafeRequest
from headwater.upstream.transport import UpstreamResponse

KINDS = ("create", "update", "delete")


async def write_record(
    upstream: Upstream,
    account: UpstreamAccount,
    collection: Collection,
    kind: str,
    upstream_id: str,
    data: dict | None,
    idempotency_key: str,
    deadline: float,
    params: dict | None = None,
) -> Change:
    """Creates, updates or deletes one record upstream; returns what the upstream now says it is.

    `upstream_id` is "" for a create; `data` is None for a delete; `params` (the sync's metadata)
    fill the path's other `{NAME}`s (Airtable's `{base_id}/{table}`). Raises ApiError."""
    spec = collection.write
    operation = getattr(spec, kind)
    headers = [("Accept", "application/json")]
    if idempotency_key and spec.idempotency_header:
        headers.append((spec.idempotency_header, idempotency_key))
    body = b""
    if operation.body is not None:
        body = json.dumps(_filled(operation.body, data, upstream_id), separators=(",", ":")).encode()
        headers.append(("Content-Type", "application/json"))
    elif data is not None:
        body, content_type = encode_body(spec, data)
        headers.append(("Content-Type", content_type))
    response = await _send(upstream, account, collection, operation, upstream_id, headers, body, deadline, params)
    if kind == "delete":
        return Change.delete(upstream_id, _answer_time(response))

    record = _json(response.body)
    if spec.fetch is not None:
        if kind == "create":
            upstream_id = _string(dig(record, spec.created_id or spec.id))
            if not upstream_id:
                raise _malformed(account, collection, f"its answer to the create has no `{spec.created_id}`")
        try:
            response = await _send(upstream, account, collection, spec.fetch, upstream_id, [headers[0]], b"", deadline,
                                   params)
        except ApiError as error:
            raise ApiError(
                error.code,
                f"{account.provider.name} {collection.name} {upstream_id} was written, but reading it back "
                f"failed: {error.message}",
                headers=error.headers,
                http_status=error.http_status,
            ) from None
        record = _json(response.body)
    answer, record = record, dig(record, spec.record)
    if not isinstance(record, dict) and isinstance(dig(answer, spec.error_message), str):
        # a GraphQL API answers a refused mutation with HTTP 200 and its errors, and no record
        raise failure(Kind.PERMANENT, api_name(account), status=response.status, provider=account.provider.name,
                      message=error_message(spec.error_message, response.body), credential=account.credential_id,
                      subject=f"{collection.name} {upstream_id}")
    if not isinstance(record, dict) or not _string(dig(record, spec.id)):
        raise _malformed(account, collection, f"its answer is not a record with `{spec.id}`")
    return Change(_string(dig(record, spec.id)), record, _record_time(spec, record, response))


def encode_body(spec: WriteSpec, data: dict) -> tuple[bytes, str]:
    """The request body for `data` (wrapped in `spec.wrap` unless the caller already did) and its
    content type."""
    if spec.wrap and not (set(data) == {spec.wrap} and isinstance(data[spec.wrap], dict)):
        data = {spec.wrap: data}
    if spec.format == "form":
        return urlencode(form_fields(data)).encode(), "application/x-www-form-urlencoded"
    return json.dumps(data, separators=(",", ":")).encode(), "application/json"


def _filled(template: Any, data: dict | None, upstream_id: str) -> Any:
    """A write's `body` template with the mutation's data for "{data}" and its id for `{id}`:
    {"variables": {"id": "{id}", "input": "{data}"}} -> {"variables": {"id": "i1", "input": {...}}}."""
    return fill_strings(template, lambda text: (data or {}) if text == "{data}" else text.replace("{id}", upstream_id))


def form_fields(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Stripe's form encoding: {"metadata": {"a": 1}, "items": [{"price": "p"}]} ->
    [("metadata[a]", "1"), ("items[0][price]", "p")]; true/false as words, null as "" (unset)."""
    if isinstance(value, dict):
        pairs = []
        for key, item in value.items():
            pairs += form_fields(item, f"{prefix}[{key}]" if prefix else str(key))
        return pairs
    if isinstance(value, list):
        pairs = []
        for index, item in enumerate(value):
            pairs += form_fields(item, f"{prefix}[{index}]")
        return pairs
    if isinstance(value, bool):
        return [(prefix, "true" if value else "false")]
    return [(prefix, "" if value is None else str(value))]


def upstream_error(account: UpstreamAccount, collection: Collection, response: UpstreamResponse, outcome: Outcome,
                   upstream_id: str) -> ApiError:
    """The documented error for an upstream's non-2xx answer to a write, carrying its message."""
    return answer_error(outcome, response, api_name(account), message_at=collection.write.error_message,
                        provider=account.provider.name, credential=account.credential_id,
                        subject=f"{collection.name} {upstream_id}")


async def _send(upstream, account, collection, operation: WriteRequest, upstream_id, headers, body, deadline, params):
    try:
        path = fill_names(operation.path.replace("{id}", quote(upstream_id, safe="")), params or {})
    except ReadError as missing:
        raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, f"{collection.id}: {missing}") from None
    fields = ",".join(collection.read.fields) if collection.read else ""
    query = urlencode({k: str(v).replace("{fields}", fields) for k, v in operation.query.items()})
    try:
        sent = await upstream.send(account, UpstreamCall(
            method=operation.method, path=path, query=query, headers=headers, body=body, deadline=deadline))
    except UnsafeRequest as unsafe:
        raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, f"credential {account.credential_id}: {unsafe}") from None
    if not 200 <= sent.response.status < 300 or sent.outcome.kind is Kind.PAUSE:  # (a rate-limited 200: not done)
        raise upstream_error(account, collection, sent.response, sent.outcome, upstream_id)
    return sent.response


def _record_time(spec: WriteSpec, record: dict, response: UpstreamResponse) -> datetime.datetime:
    if spec.updated_at:
        try:
            found = parse_time(dig(record, spec.updated_at))
        except ReadError:
            found = None
        if found is not None:
            return found
    return _answer_time(response)


def _answer_time(response: UpstreamResponse) -> datetime.datetime:
    """When the upstream answered: its Date header, else our clock."""
    for name, value in response.headers:
        if name.lower() == "date":
            try:
                return email.utils.parsedate_to_datetime(value).astimezone(datetime.UTC).replace(tzinfo=None)
            except (TypeError, ValueError):
                break
    return utcnow()


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _string(value: Any) -> str:
    return "" if value is None or isinstance(value, dict | list) else str(value)


def _malformed(account: UpstreamAccount, collection: Collection, what: str) -> ApiError:
    return ApiError(
        grpc.StatusCode.UNAVAILABLE,
        f"{account.provider.name} wrote the {collection.name} but {what}; the next sync will record it",
        http_status=502,
    )
