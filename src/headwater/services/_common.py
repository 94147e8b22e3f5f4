"""What the servicers share: the backend they work against, and small protobuf helpers."""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from dataclasses import dataclass

from google.protobuf import field_mask_pb2, json_format, struct_pb2, timestamp_pb2

from headwater.auth import Auth
from headwater.crypto import SecretBox
from headwater.errors import raise_if_invalid
from headwater.inputs import string_problem
from headwater.metrics import Metrics
from headwater.store import Store
from headwater.store.notify import AckWaiter
from headwater.upstream.accounts import Accounts
from headwater.upstream.catalogue import ProviderCatalogue
from headwater.upstream.connected_users import ConnectedUsers
from headwater.upstream.gateway import Upstream
from headwater.upstream.oauth_apps import OAuthApps

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
NOT_OUR_PAGE_TOKEN = "is not a next_page_token this server issued"


@dataclass
class Backend:
    """Everything a servicer needs, built once by the server."""

    store: Store
    auth: Auth
    catalogue: ProviderCatalogue
    box: SecretBox
    accounts: Accounts
    oauth_apps: OAuthApps  # the organisations' apps and the instance's defaults
    connected_users: ConnectedUsers
    upstream: Upstream
    acks: AckWaiter  # read-your-writes: `await acks.wait(org_id, consumer_ids, event_seqs, timeout)`
    metrics: Metrics  # the server's instruments (headwater.metrics); `upstream` holds the same


# --- protobuf <-> Python ---------------------------------------------------------------------


def timestamp(value: datetime.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.replace(tzinfo=datetime.UTC))
    return ts


def struct(value: dict | None) -> struct_pb2.Struct | None:
    if value is None:
        return None
    s = struct_pb2.Struct()
    s.update(value)
    return s


def struct_dict(message, field: str) -> dict | None:
    """The Struct field as a dict, or None when unset."""
    if not message.HasField(field):
        return None
    return json_format.MessageToDict(getattr(message, field))


def update_paths(mask: field_mask_pb2.FieldMask, message) -> list[str]:
    """The fields an update changes: the mask's paths, or else the fields set in the message."""
    if mask.paths:
        return list(mask.paths)
    return [field.name for field, _ in message.ListFields()]


# --- pagination --------------------------------------------------------------------------------


def page_size_violations(request) -> list[tuple[str, str]]:
    if not 0 <= request.page_size <= MAX_PAGE_SIZE:
        return [("page_size", f"must be between 1 and {MAX_PAGE_SIZE} (0 or unset: {DEFAULT_PAGE_SIZE})")]
    return []


def page_violations(request) -> list[tuple[str, str]]:
    """What is wrong with a list request's `page_size` and `page_token` (for `paginate`)."""
    violations = page_size_violations(request)
    if request.page_token and _decode_page_token(request.page_token) is None:
        violations.append(("page_token", NOT_OUR_PAGE_TOKEN))
    return violations


def paginate(query, model, request) -> tuple[list, str]:
    """One page of `query` in (created_at, id) order, and the token of the next page ("" at the end).

    The token is the position after the page's last row, so rows inserted meanwhile are neither
    skipped nor repeated.
    """
    raise_if_invalid(page_violations(request))
    size = request.page_size or DEFAULT_PAGE_SIZE
    if request.page_token:
        created_at, row_id = _decode_page_token(request.page_token)
        query = query.where(
            (model.created_at > created_at) | ((model.created_at == created_at) & (model.id > row_id))
        )
    rows = list(query.order_by(model.created_at, model.id).limit(size + 1))
    if len(rows) <= size:
        return rows, ""
    rows = rows[:size]
    last = rows[-1]
    return rows, _encode_page_token(last.created_at, last.id)


def _encode_page_token(created_at: datetime.datetime, row_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_page_token(token: str) -> tuple[datetime.datetime, str] | None:
    """The position `_encode_page_token` wrote, or None for a token it did not write (a row id no
    column holds, a time with a zone: ours are naive UTC)."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created_at, row_id = json.loads(raw)
        position = datetime.datetime.fromisoformat(created_at)
    except (binascii.Error, ValueError, TypeError):
        return None
    if position.tzinfo is not None or not isinstance(row_id, str) or string_problem(row_id):
        return None
    return position, row_id
