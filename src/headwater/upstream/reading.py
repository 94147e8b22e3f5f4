"""Reading one page of a catalogue listing: the request to send, and what the answer says.

Pure functions, no I/O. The sync engine (sync.py) sends the request through the gateway and
writes the changes; this module knows only the catalogue's `read:` vocabulary.

    request = page_request(listing, read, since, params, token=None)
    # request.method, request.path, request.query, request.body
    page = parse_page(listing, status, headers, body)
    # page.changes: [Change(...)], page.next_token: str | None, page.newest: datetime | None

A listing's placeholders: `{since:epoch}`, `{since:ms}`, `{since:iso}` (the watermark; in a JSON
body, a whole value `{since:epoch_number}` or `{since:ms_number}` is sent as a number),
`{fields}` (the read spec's field list), any other `{name}` from the sync's metadata.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from headwater.store.records import Change
from headwater.upstream.catalogue import Listing, ReadSpec

EPOCH = datetime.datetime(1970, 1, 1)
_PLACEHOLDER = re.compile(r"\{(\w+)(?::(\w+))?\}")
_NUMBERS = ("epoch_number", "ms_number")
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;[^,]*rel="?next"?')


class ReadError(Exception):
    """The listing cannot be read as configured, or its answer makes no sense (a lasting error)."""


@dataclass(frozen=True)
class PageRequest:
    method: str
    path: str  # relative to the account's base URL, or a full URL (a `next` URL of the upstream's)
    query: str
    body: bytes


@dataclass(frozen=True)
class Page:
    changes: list[Change]
    next_token: str | None  # None: the listing ends here
    newest: datetime.datetime | None  # the latest change time on this page


def page_request(
    listing: Listing, read: ReadSpec, since: datetime.datetime, params: dict, token: str | None = None
) -> PageRequest:
    """The request for the listing's first page (no token) or for the page `token` names."""
    paging = listing.next
    if token is not None and "url" in paging:
        path, _, query = token.partition("?")
        return PageRequest("GET", path, query, b"")

    def text(value: str):
        whole = _PLACEHOLDER.fullmatch(value)
        if whole and whole.group(2) in _NUMBERS:  # {since:epoch_number}: a JSON number, not a string
            return int(_placeholder(whole, read, since, params))
        return _PLACEHOLDER.sub(lambda m: _placeholder(m, read, since, params), value)

    def fill(value):
        return fill_strings(value, text)

    query = {k: _query_value(fill(v)) for k, v in listing.query.items()}
    body = fill(listing.body)
    if token is not None:
        if listing.method == "GET":
            query[paging["param"]] = token
        else:
            body = _with_value(body or {}, paging["param"].split("."), token)
    return PageRequest(
        listing.method,
        fill(listing.path),
        urlencode(query, doseq=True),
        b"" if body is None else json.dumps(body).encode(),
    )


def parse_page(listing: Listing, status: int, headers: list[tuple[str, str]], body: bytes) -> Page:
    """The changes on a 2xx answer's page, and where the next page is."""
    try:
        answer = json.loads(body)
    except ValueError:
        raise ReadError(f"the answer to the listing is not JSON (HTTP {status})") from None
    items = dig(answer, listing.items)
    if not isinstance(items, list):
        said = dig(answer, "errors.0.message")  # a GraphQL API answers 200 with its errors
        raise ReadError(f"the answer has no list at {listing.items or 'its top level'!r}"
                        + (f": {said}" if isinstance(said, str) else ""))
    changes = []
    newest = None
    for item in items:
        change = _change(listing, item)
        changes.append(change)
        if change.upstream_updated_at and (newest is None or change.upstream_updated_at > newest):
            newest = change.upstream_updated_at
    return Page(changes, _next_token(listing, answer, items, headers), newest)


def dig(value: Any, path: str) -> Any:
    """`dig({"a": {"b": 1}}, "a.b") == 1`, `dig({"a": [{"b": 1}]}, "a.0.b") == 1` (a number
    indexes a list); "" is the value itself; missing is None."""
    for part in path.split(".") if path else ():
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def parse_time(value: Any) -> datetime.datetime | None:
    """Epoch seconds or milliseconds (numbers or digit strings) or ISO-8601, as naive UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 1e11 else value
        return EPOCH + datetime.timedelta(seconds=seconds)
    try:
        parsed = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        raise ReadError(f"{value!r} is not a time Headwater can read") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(datetime.UTC).replace(tzinfo=None)
    return parsed


def _change(listing: Listing, item: Any) -> Change:
    upstream_id = dig(item, listing.id)
    if upstream_id is None or upstream_id == "":
        raise ReadError(f"an item of the listing has no id at {listing.id!r}")
    updated_at = parse_time(dig(item, listing.updated_at)) if listing.updated_at else None
    rule = listing.deleted_when
    if listing.deleted or (rule is not None and dig(item, rule["path"]) == rule["equals"]):
        return Change.delete(str(upstream_id), updated_at)
    record = dig(item, listing.record)
    if not isinstance(record, dict):
        raise ReadError(f"an item of the listing has no record at {listing.record!r}")
    return Change(str(upstream_id), record, updated_at)


def _next_token(listing: Listing, answer: Any, items: list, headers: list[tuple[str, str]]) -> str | None:
    paging = listing.next
    if not paging:
        return None
    if ("while" in paging and not dig(answer, paging["while"])) or ("until" in paging and dig(answer, paging["until"])):
        return None
    if "url" in paging:
        if paging["url"] == "header:link":
            for name, value in headers:
                if name.lower() == "link" and (match := _LINK_NEXT.search(value)):
                    return match.group(1)
            return None
        return dig(answer, paging["url"]) or None
    source = paging["value"]
    if source.startswith("last."):
        value = dig(items[-1], source.removeprefix("last.")) if items else None
    else:
        value = dig(answer, source)
    return None if value is None or value == "" else str(value)


def fill_strings(value: Any, replace: Callable[[str], Any]) -> Any:
    """`value` (JSON-like) with every string in it replaced by `replace(string)`: how a listing's
    and a write's request templates are filled."""
    if isinstance(value, str):
        return replace(value)
    if isinstance(value, list):
        return [fill_strings(v, replace) for v in value]
    if isinstance(value, dict):
        return {k: fill_strings(v, replace) for k, v in value.items()}
    return value


def _with_value(body: dict, path: list[str], value: str) -> dict:
    """A copy of `body` with `value` at the dotted path (a GraphQL cursor goes in `variables.after`)."""
    head, *rest = path
    inner = body.get(head)
    return {**body, head: _with_value(inner if isinstance(inner, dict) else {}, rest, value) if rest else value}


def fill_names(text: str, params: dict) -> str:
    """`text` with each `{NAME}` taken from the sync's metadata (a write's path); ReadError names
    one that is missing."""
    return _PLACEHOLDER.sub(lambda m: quote(_metadata(params, m.group(1)), safe="/"), text)


def _metadata(params: dict, name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise ReadError(f"set `{name}` in the sync's metadata: this collection needs it")
    return str(value)


def _placeholder(match: re.Match, read: ReadSpec, since: datetime.datetime, params: dict) -> str:
    name, form = match.group(1), match.group(2)
    if name == "since":
        seconds = (since - EPOCH).total_seconds()
        if form in ("epoch", "epoch_number"):
            return str(int(seconds))
        if form in ("ms", "ms_number"):
            return str(int(seconds * 1000))
        return since.replace(microsecond=0).isoformat() + "Z"
    if name == "fields":
        return ", ".join(read.fields)
    return _metadata(params, name)


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return [_query_value(v) for v in value]
    return value
