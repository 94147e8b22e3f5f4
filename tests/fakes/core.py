"""What every provider emulator shares: the in-memory records, the HTTP serving, recording, delays,
injected failures, a provider's rate limit, routing, and the paging styles providers use.

A provider module (stripe.py, zendesk.py, ...) subclasses FakeProvider with its routes, ids, shapes
and errors; see tests/fakes/__init__.py for how tests use them.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import secrets
import string
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

import uvicorn
from emulators import Received, read_request, serve_on_loopback


# ---------------------------------------------------------------------------------------------
# The shared in-memory store
# ---------------------------------------------------------------------------------------------


@dataclass
class Item:
    """One object: its fields as the provider stores them, and its timestamps (epoch ms)."""

    id: str
    fields: dict
    created: int
    updated: int
    seq: int  # insertion order: breaks ties between equal timestamps
    deleted: int | None = None  # when it was deleted (it stays here, flagged, for deletion listings)


class MemoryStore:
    """Collections of items, each with created/updated times; deletions flag an item and are logged."""

    def __init__(self):
        self.collections: dict[str, dict[str, Item]] = defaultdict(dict)
        self.deletions: list[tuple[str, Item]] = []  # (collection, item), in deletion order
        self.lock = threading.RLock()
        self._seq = itertools.count(1)
        self._last = 0

    def now(self) -> int:
        """Epoch milliseconds, strictly increasing across calls."""
        with self.lock:
            self._last = max(int(time.time() * 1000), self._last + 1)
            return self._last

    def add(self, collection: str, id: str, fields: dict, at: int | None = None) -> Item:
        at = self.now() if at is None else at
        item = Item(id, fields, at, at, next(self._seq))
        self.collections[collection][id] = item
        return item

    def update(self, item: Item, fields: dict) -> None:
        item.fields = fields
        item.updated = self.now()

    def remove(self, collection: str, item: Item) -> None:
        item.deleted = item.updated = self.now()
        self.deletions.append((collection, item))

    def find(self, collection: str, id: str) -> Item | None:
        return self.collections[collection].get(id)

    def items(self, collection: str, deleted: bool = False) -> list[Item]:
        """Items in insertion order; deleted ones only when asked."""
        return [it for it in self.collections[collection].values() if deleted or it.deleted is None]


# ---------------------------------------------------------------------------------------------
# The HTTP machinery every emulator shares: recording, delay, injected failures, auth, routing
# ---------------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: object = None  # JSON-able; bytes are sent as they are; None sends no body
    headers: list[tuple[str, str]] = field(default_factory=list)


class Reject(Exception):
    """Raised inside a handler to answer at once (validation errors, not found)."""

    def __init__(self, answer: Answer):
        super().__init__(answer.status)
        self.answer = answer


@dataclass
class Limit:
    allowed: int
    window: float  # seconds
    used: int
    resets_at: float  # epoch seconds

    @property
    def remaining(self) -> int:
        return max(0, self.allowed - self.used)


@dataclass
class _Failure:
    status: int
    times: int
    retry_after: float | None
    body: object
    path_contains: str | None


EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")  # what the providers accept as an email address


def route(method: str, pattern: str, handler: Callable) -> tuple[str, re.Pattern, Callable]:
    """("GET", "/v1/customers/{id}", h): the {name} parts are passed to h as keyword arguments."""
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
    return method, re.compile(regex + "/?"), handler


def query_params(request: Received) -> dict[str, str]:
    return dict(parse_qsl(request.query, keep_blank_values=True))


def random_token(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def to_ms(at) -> int | None:
    """A datetime or epoch seconds as epoch ms."""
    if at is None:
        return None
    if isinstance(at, datetime):
        return int(at.timestamp() * 1000)
    return int(at * 1000)


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def parse_iso(text: str) -> int:
    """ISO-8601 (Z, +00:00 or +0000) as epoch ms; ValueError if it is not one."""
    when = datetime.fromisoformat(text.strip().replace(" ", "+"))  # a '+' sent unencoded in a query is a space
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


class FakeProvider:
    """What every emulator shares. A provider subclass supplies its routes, ids, shapes and errors."""

    name = ""
    aliases: dict[str, str] = {}
    id_field = "id"

    def __init__(self):
        self.store = MemoryStore()
        self.token = self.make_token()
        self.requests: list[Received] = []
        self.delay = 0.0
        self.port = 0
        self._failures: list[_Failure] = []
        self._rate_limit: Limit | None = None
        self.rate_limited_answers = 0  # how often it answered "rate limited" (see `limit`)
        self._serial = itertools.count(1)  # for ids
        self._routes = self.routes()
        self._closing: asyncio.Event | None = None
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- what a provider defines -----------------------------------------------------------

    def make_token(self) -> str:
        raise NotImplementedError

    def credential_properties(self, token: str) -> dict:
        """A Headwater credential's properties that reach this emulator with `token` (the newer
        emulators; tests/sync_support.py knows the first four's)."""
        raise NotImplementedError

    def routes(self) -> list[tuple[str, re.Pattern, Callable]]:
        raise NotImplementedError

    def new_id(self, collection: str) -> str:
        raise NotImplementedError

    def sample(self, collection: str, k: int, given: dict) -> dict:
        """Plausible fields for the k-th seeded object of a collection (`given`: the ones seed was passed)."""
        raise NotImplementedError

    def render(self, collection: str, item: Item) -> dict:
        """The object as the API shows it."""
        raise NotImplementedError

    def error(self, status: int, message: str) -> Answer:
        """An error answer in the provider's own shape, for fail_next and unknown paths: 401 as a rejected
        token, 403 as a missing permission, 429 as the provider's rate limit, 5xx as its server errors."""
        raise NotImplementedError

    def authorized(self, request: Received) -> bool:
        return request.header("authorization") == f"Bearer {self.token}"

    def unauthorized(self) -> Answer:
        raise NotImplementedError

    def merge(self, collection: str, old: dict, changes: dict) -> dict:
        return {**old, **changes}

    def fields_of(self, obj: dict) -> dict:
        return {k: v for k, v in obj.items() if k != self.id_field}

    def on_change(self, kind: str, collection: str, item: Item, previous: dict | None) -> None:
        """Called after every created / updated / deleted object (Stripe records events here)."""

    # -- changes, through the API or behind its back ---------------------------------------

    def _insert(self, collection: str, fields: dict, at: int | None = None, id: str | None = None) -> Item:
        item = self.store.add(collection, id or self.new_id(collection), fields, at)
        self.on_change("created", collection, item, None)
        return item

    def _modify(self, collection: str, item: Item, fields: dict, kind: str = "updated") -> None:
        previous = item.fields
        self.store.update(item, fields)
        self.on_change(kind, collection, item, previous)

    def _remove(self, collection: str, item: Item) -> None:
        self.store.remove(collection, item)
        self.on_change("deleted", collection, item, item.fields)

    def collection(self, name: str) -> str:
        name = self.aliases.get(name, name)
        if name not in self.known_collections():
            raise ValueError(f"{self.name} has no collection {name!r}; it has {sorted(self.known_collections())}")
        return name

    def known_collections(self):
        return set(self.aliases.values())

    def seed(self, collection: str, n: int = 1, at=None, **fields) -> list[dict]:
        """Create n objects dated one second apart, the last at `at`; a callable field value is called
        with the object's index in this call (0 to n-1). Returns them as the API shows them."""
        collection = self.collection(collection)
        with self.store.lock:
            self.store.collections[collection]  # a GitHub repository exists once seeded, even with n=0
            end = to_ms(at) or self.store.now()
            first = len(self.store.collections[collection]) + 1
            made = []
            for i in range(n):
                values = {k: (v(i) if callable(v) else v) for k, v in fields.items()}
                item = self._insert(collection, {**self.sample(collection, first + i, values), **values},
                                    at=end - (n - 1 - i) * 1000)
                made.append(self.render(collection, item))
            return made

    def objects(self, collection: str) -> dict[str, dict]:
        collection = self.collection(collection)
        with self.store.lock:
            return {it.id: self.render(collection, it) for it in self.store.items(collection)}

    def get(self, collection: str, id) -> dict | None:
        collection = self.collection(collection)
        with self.store.lock:
            item = self.store.find(collection, str(id))
            return None if item is None or item.deleted else self.render(collection, item)

    def put(self, collection: str, obj: dict) -> dict:
        collection = self.collection(collection)
        id, changes = str(obj[self.id_field]), self.fields_of(obj)
        with self.store.lock:
            item = self.store.find(collection, id)
            if item is None or item.deleted:
                item = self._insert(collection, changes, id=id)
            else:
                self._modify(collection, item, self.merge(collection, item.fields, changes))
            return self.render(collection, item)

    def delete(self, collection: str, id) -> None:
        collection = self.collection(collection)
        with self.store.lock:
            item = self.store.find(collection, str(id))
            if item is None or item.deleted:
                raise KeyError(f"{collection} {id} does not exist")
            self._remove(collection, item)

    def deleted(self, collection: str) -> list[str]:
        collection = self.collection(collection)
        return [item.id for c, item in self.store.deletions if c == collection]

    def fail_next(self, status: int, times: int = 1, retry_after: float | None = None, body=None,
                  path_contains: str | None = None) -> None:
        """The next `times` requests (whose path and query contain `path_contains`) answer `status`."""
        self._failures.append(_Failure(status, times, retry_after, body, path_contains))

    # -- the provider's rate limit ----------------------------------------------------------

    def limit(self, allowed: int, window: float, spent: bool = False) -> None:
        """From now on at most `allowed` requests per `window` seconds, counted as the provider
        counts them (a fixed window from the first request in it; `spent`: someone else already
        used this window's budget, which resets `window` seconds from now). Every answer carries the
        provider's budget headers (`budget_headers`); a request over the budget gets the provider's
        rate-limited answer (`rate_limited`) and does nothing."""
        self._rate_limit = Limit(allowed, window, allowed if spent else 0, time.time() + window if spent else 0.0)

    def budget_headers(self, limit: Limit) -> list[tuple[str, str]]:
        """The headers by which the provider tells the budget left (none: Stripe tells nothing)."""
        return []

    def rate_limited(self, limit: Limit) -> Answer:
        return self.error(429, "Too many requests hit the API too quickly.")

    def _spend(self) -> Answer | None:
        """Counts a request against the rate limit; the rate-limited answer if it is over it."""
        limit = self._rate_limit
        now = time.time()
        if now >= limit.resets_at:
            limit.used, limit.resets_at = 0, now + limit.window
        if limit.used >= limit.allowed:
            self.rate_limited_answers += 1
            return self.rate_limited(limit)
        limit.used += 1
        return None

    # -- serving ---------------------------------------------------------------------------

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        request = await read_request(scope, receive)
        self.requests.append(request)
        if self.delay:
            try:
                await asyncio.wait_for(self._closing.wait(), self.delay)
            except TimeoutError:
                pass
        with self.store.lock:
            over = self._spend() if self._rate_limit else None
            answer = over or self._injected_failure(request) or self.answer(request)
            if self._rate_limit:
                answer = Answer(answer.status, answer.body, [*answer.headers, *self.budget_headers(self._rate_limit)])
        if answer.body is None:
            out, content_type = b"", []
        elif isinstance(answer.body, bytes):
            out, content_type = answer.body, []
        else:
            out, content_type = json.dumps(answer.body).encode(), [("content-type", "application/json")]
        headers = [*content_type, *answer.headers, ("content-length", str(len(out)))]
        await send({"type": "http.response.start", "status": answer.status,
                    "headers": [(k.encode(), v.encode()) for k, v in headers]})
        await send({"type": "http.response.body", "body": out})

    def answer(self, request: Received) -> Answer:
        if not self.authorized(request):
            return self.unauthorized()
        return self.dispatch(request)

    def dispatch(self, request: Received) -> Answer:
        path_matched = False
        for method, regex, handler in self._routes:
            match = regex.fullmatch(request.path)
            if not match:
                continue
            path_matched = True
            if method == request.method:
                try:
                    return handler(request, **match.groupdict())
                except Reject as rejected:
                    return rejected.answer
        if path_matched:
            return self.error(405, f"Method {request.method} not allowed on {request.path}")
        return self.error(404, f"Unrecognized request URL ({request.method}: {request.path})")

    def _injected_failure(self, request: Received) -> Answer | None:
        for failure in self._failures:
            if failure.path_contains is None or failure.path_contains in f"{request.path}?{request.query}":
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
                status = failure.status
                answer = self.unauthorized() if status == 401 else self.error(status, f"Injected failure {status}")
                if failure.body is not None:
                    answer.body = failure.body.encode() if isinstance(failure.body, str) else failure.body
                if failure.retry_after is not None:
                    answer.headers.append(("retry-after", f"{failure.retry_after:g}"))
                return answer
        return None

    async def start(self) -> None:
        self._closing = asyncio.Event()
        self.port, self._server, self._task = await serve_on_loopback(self)

    async def close(self) -> None:
        self._closing.set()  # delayed answers go out now
        self._server.should_exit = True
        await self._task


# ---------------------------------------------------------------------------------------------
# What the newer emulators share: request bodies, times, the order of a change listing, and the
# paging styles providers use (each provider module says which of them its API has)
# ---------------------------------------------------------------------------------------------


def json_body(request: Received, invalid: Callable[[str], Answer]) -> dict:
    """The request's JSON object; `invalid(message)` is the provider's 400 when it is not one."""
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise Reject(invalid("The request body is not a JSON object"))
    return body


def iso(ms: int, digits: int = 3) -> str:
    """Epoch ms as ISO-8601 UTC with `digits` fractional digits (0: whole seconds), "…Z"."""
    text = utc(ms).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms % 1000:03d}"[:len(text) + 1 + digits] + "Z" if digits else text + "Z"


def changed_since(items: list[Item], since_ms: int | None, resolution_ms: int = 1) -> list[Item]:
    """Items changed at or after `since_ms` (compared at the provider's resolution), oldest change first."""
    if since_ms is not None:
        items = [it for it in items if it.updated // resolution_ms >= since_ms // resolution_ms]
    return sorted(items, key=lambda it: (it.updated, it.seq))


def offset_cursor(offset: int) -> str:
    """An opaque cursor naming a position in a listing (as providers' cursors are: base64)."""
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def cursor_offset(cursor: str | None, invalid: Callable[[str], Answer]) -> int:
    if not cursor:
        return 0
    try:
        kind, _, number = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().partition(":")
        if kind == "o" and number.isdigit():
            return int(number)
    except ValueError:
        pass
    raise Reject(invalid(f"Invalid cursor: {cursor}"))


def cursor_page(items: list, cursor: str | None, limit: int,
                invalid: Callable[[str], Answer]) -> tuple[list, str | None]:
    """Cursor paging (Pipedrive's next_cursor, Notion's next_cursor, Linear's endCursor, Zendesk's
    after_cursor): this page of `items` and the cursor of the next one (None at the end)."""
    start = cursor_offset(cursor, invalid)
    page = items[start:start + limit]
    return page, offset_cursor(start + limit) if start + limit < len(items) else None


def link_header(url: str, params: dict, next_params: dict | None) -> list[tuple[str, str]]:
    """A `Link: <url?...>; rel="next"` header (Shopify's page_info, Greenhouse's page) when there
    is a next page; none at the end."""
    if next_params is None:
        return []
    return [("link", f'<{url}?{urlencode({**params, **next_params})}>; rel="next"')]


def whole(text: str | None, default: int, cap: int) -> int:
    """A page size parameter: a whole number up to `cap`, else `default`."""
    return min(int(text), cap) if text and text.isdigit() and int(text) > 0 else default


def change_cursor(item: Item | None, floor_ms: int = 0) -> str:
    """A change feed's position: after `item`'s change (None: after `floor_ms`). Unlike an offset it
    holds when a record read earlier changes again (and moves to the feed's end)."""
    key = f"c:{item.updated}:{item.seq}" if item else f"c:{floor_ms - 1}:{2**62}"
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def after_change(items: list[Item], cursor: str, invalid: Callable[[str], Answer]) -> list[Item]:
    """The items (oldest change first) after the position `cursor` names."""
    try:
        kind, updated, seq = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split(":")
        position = (int(updated), int(seq))
    except ValueError:
        raise Reject(invalid(f"Invalid cursor: {cursor}")) from None
    return [it for it in changed_since(items, None) if (it.updated, it.seq) > position]


class SingularRecords:
    """Create, show and update for a REST API that wraps one record in its singular name, as
    Shopify (`{"product": {...}}`) and Zendesk (`{"ticket": {...}}`) do. The provider gives
    `singular` (collection -> name), `_fields` (the request's fields) and `_find` (404 if absent)."""

    singular: dict[str, str] = {}

    def create(self, request: Received, collection: str) -> Answer:
        item = self._insert(collection, self._fields(request, collection, True))
        return Answer(201, {self.singular[collection]: self.render(collection, item)})

    def show(self, collection: str, id: str) -> Answer:
        return Answer(200, {self.singular[collection]: self.render(collection, self._find(collection, id))})

    def update(self, request: Received, collection: str, id: str) -> Answer:
        item = self._find(collection, id)
        self._modify(collection, item, {**item.fields, **self._fields(request, collection, False)})
        return Answer(200, {self.singular[collection]: self.render(collection, item)})
