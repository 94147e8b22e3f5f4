"""Stateful emulators of Stripe, Salesforce, HubSpot and GitHub: real HTTP servers for tests.

Each emulator is an ASGI app served by uvicorn on 127.0.0.1 (port 0) in the test's event loop. It
keeps its objects in memory and answers the calls Headwater makes the way the provider does: the
same paths, request encodings, response shapes, status codes, paging and error bodies (checked
against the providers' API references and /work/shared/upstream-specs/). Read a provider's class to
learn what its API does; tests/test_fake_providers.py shows each call.

    fake = await start_fake_provider("stripe")      # "stripe" | "salesforce" | "hubspot" | "github"
    fake.base_url, fake.token                        # a credential with properties.base_url = fake.base_url
    fake.seed("customers", n=3, email=lambda i: f"u{i}@example.com")   # -> the 3 objects, as the API shows them
    fake.objects("customers")                        # {id: object} of the live objects
    fake.get("customers", id), fake.put("customers", {"id": id, "name": "New"}), fake.delete("customers", id)
    fake.deleted("customers")                        # ids deleted so far, oldest first
    fake.fail_next(429, retry_after=2)               # the next request answers 429 in the provider's shape
    fake.limit(100, window=10)                       # its rate limit: budget headers on every answer, and
                                                     # the provider's rate-limited answer over it
    fake.delay = 2.0                                 # every answer comes 2 s late (the request still takes effect)
    fake.requests                                    # what arrived (emulators.Received, with .at = when)
    await fake.close()

Run as a program, it serves all four with a few records each, for the README's examples:

    eval "$(.venv/bin/python tests/fake_providers.py --background)"   # sets STRIPE_URL, STRIPE_KEY, ...
    kill $FAKE_PROVIDERS_PID

Collections are named as the API names them: Stripe "customers" / "subscriptions" / "invoices",
Salesforce "Contact" / "Account" / "Task", HubSpot "contacts" / "companies" / "deals", GitHub
"owner/repo" (that repository's issues). The catalogue's keys work too ("customer", "contact",
"issue"; GitHub's "issue" is the repository `fake.repo`).

`seed` writes behind the API's back (no validation) and dates the objects as history: one second
apart, the last one `at` (a datetime or epoch seconds; default now). `put` merges fields into an
object (creating it under that id if missing) as an update would, `delete` removes it as the API's
delete would (Stripe subscriptions are canceled); both bump the modified time and leave the same
traces the API would (Stripe events, Salesforce's deleted list, HubSpot's archive).

Times: every change after seeding gets a strictly increasing millisecond timestamp, rendered in each
provider's own resolution (Stripe and GitHub: seconds, so changes within one second tie, as they do
for real).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import itertools
import json
import math
import operator
import re
import secrets
import shlex
import string
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

import uvicorn
from emulators import Received, read_request, serve_in_background, serve_on_loopback, serve_until_stopped


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
class _Limit:
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


def _route(method: str, pattern: str, handler: Callable) -> tuple[str, re.Pattern, Callable]:
    """("GET", "/v1/customers/{id}", h): the {name} parts are passed to h as keyword arguments."""
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
    return method, re.compile(regex + "/?"), handler


def query_params(request: Received) -> dict[str, str]:
    return dict(parse_qsl(request.query, keep_blank_values=True))


def _random(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def _ms(at) -> int | None:
    """A datetime or epoch seconds as epoch ms."""
    if at is None:
        return None
    if isinstance(at, datetime):
        return int(at.timestamp() * 1000)
    return int(at * 1000)


def _utc(ms: int) -> datetime:
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
        self._rate_limit: _Limit | None = None
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
            end = _ms(at) or self.store.now()
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
        self._rate_limit = _Limit(allowed, window, allowed if spent else 0, time.time() + window if spent else 0.0)

    def budget_headers(self, limit: _Limit) -> list[tuple[str, str]]:
        """The headers by which the provider tells the budget left (none: Stripe tells nothing)."""
        return []

    def rate_limited(self, limit: _Limit) -> Answer:
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
# Stripe
# ---------------------------------------------------------------------------------------------

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def decode_stripe_form(text: str) -> dict:
    """Stripe's form encoding: `metadata[plan]=pro&items[0][price]=p&expand[]=a` -> nested dicts and lists."""
    out: dict = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        head, _, rest = key.partition("[")
        parts = [head] + re.findall(r"([^\[\]]*)\]", rest)
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part or str(len(node)), {})
            if not isinstance(node, dict):
                raise ValueError(f"Invalid hash: {head}")
        if isinstance(node.get(parts[-1]), dict):
            raise ValueError(f"Invalid hash: {head}")
        node[parts[-1] or str(len(node))] = value
    return _listify(out)


def _listify(value):
    if not isinstance(value, dict):
        return value
    if value and all(k.isdigit() for k in value):
        return [_listify(value[k]) for k in sorted(value, key=int)]
    return {k: _listify(v) for k, v in value.items()}


def stripe_error(status: int, message: str, type: str = "invalid_request_error", **extra) -> Answer:
    return Answer(status, {"error": {"message": message, "type": type, **extra}},
                  [("request-id", f"req_{_random(14)}")])


class StripeFake(FakeProvider):
    """Stripe: form-encoded writes, POST for updates, cursor-paged lists newest first, events.

    Lists: `limit` (1-100, default 10), `starting_after` / `ending_before` (an object id),
    `created[gt|gte|lt|lte]` (epoch seconds); answer {"object":"list","data":[...],"has_more","url"}.
    Subscriptions' list leaves out canceled ones unless `status=canceled` or `status=all`.
    Every change writes an event (customer.created, customer.updated with previous_attributes,
    customer.deleted with the deleted object, customer.subscription.*, invoice.*) to /v1/events,
    filterable by `type` (a trailing `*` matches a prefix) or `types[]`.
    An `Idempotency-Key` on a POST or DELETE replays the first successful answer for the same
    parameters (header `Idempotent-Replayed: true`); other parameters -> 400 idempotency_error.
    GET /v1/balance answers the account's (empty) balance: what checks a key.
    """

    name = "stripe"
    aliases = {"customer": "customers", "customers": "customers", "subscription": "subscriptions",
               "subscriptions": "subscriptions", "invoice": "invoices", "invoices": "invoices",
               "event": "events", "events": "events"}
    prefixes = {"customers": "cus", "subscriptions": "sub", "invoices": "in", "events": "evt"}
    object_names = {"customers": "customer", "subscriptions": "subscription", "invoices": "invoice",
                    "events": "event"}
    event_names = {"customers": "customer", "subscriptions": "customer.subscription", "invoices": "invoice"}
    parameters = {
        "customers": {"address", "balance", "cash_balance", "coupon", "description", "email", "invoice_prefix",
                      "invoice_settings", "metadata", "name", "next_invoice_sequence", "payment_method", "phone",
                      "preferred_locales", "promotion_code", "shipping", "source", "tax", "tax_exempt",
                      "tax_id_data", "test_clock", "expand"},
        "subscriptions": {"customer", "items", "metadata", "cancel_at_period_end", "collection_method",
                          "coupon", "currency", "days_until_due", "default_payment_method", "description",
                          "payment_behavior", "proration_behavior", "trial_period_days", "trial_end", "expand"},
    }

    def __init__(self):
        super().__init__()
        self._idempotent: dict[str, tuple[str, Answer]] = {}

    def make_token(self) -> str:
        return "sk_test_" + _random(24)

    def new_id(self, collection: str) -> str:
        return f"{self.prefixes[collection]}_{_random(14 if collection == 'customers' else 24)}"

    def authorized(self, request: Received) -> bool:
        sent = request.header("authorization") or ""
        basic = "Basic " + base64.b64encode(f"{self.token}:".encode()).decode()
        return sent in (f"Bearer {self.token}", basic)

    def unauthorized(self) -> Answer:
        return stripe_error(401, "Invalid API Key provided: sk_test_****" + self.token[-4:])

    def error(self, status: int, message: str) -> Answer:
        if status == 404 and message.startswith("Unrecognized request URL"):
            message += ". Please see https://stripe.com/docs or we can help at https://support.stripe.com/."
        if status == 403:
            message = ("The provided key 'rk_test_****' does not have the required permissions for this endpoint "
                       "on account 'acct_1'. Having more permissions would allow this request to continue.")
        if status == 429:
            return stripe_error(429, "Request rate limit exceeded. Learn more about rate limits here "
                                     "https://stripe.com/docs/rate-limits.", code="rate_limit")
        return stripe_error(status, message, "api_error" if status >= 500 else "invalid_request_error")

    def routes(self):
        balance = {"object": "balance", "livemode": False, "available": [{"amount": 0, "currency": "usd"}],
                   "pending": [{"amount": 0, "currency": "usd"}]}
        routes = [_route("GET", "/v1/balance", lambda r: Answer(200, balance))]
        for collection in ("customers", "subscriptions", "invoices", "events"):
            base = f"/v1/{collection}"
            routes += [
                _route("GET", base, lambda r, c=collection: self.list(r, c)),
                _route("GET", base + "/{id}", lambda r, id, c=collection: self.retrieve(c, id)),
            ]
            if collection in self.parameters:
                routes += [
                    _route("POST", base, lambda r, c=collection: self.idempotent(r, lambda: self.create(r, c))),
                    _route("POST", base + "/{id}",
                           lambda r, id, c=collection: self.idempotent(r, lambda: self.update(r, c, id))),
                    _route("DELETE", base + "/{id}",
                           lambda r, id, c=collection: self.idempotent(r, lambda: self.remove(c, id))),
                ]
        return routes

    # -- objects -------------------------------------------------------------------------

    def sample(self, collection: str, k: int, given: dict) -> dict:
        if collection == "customers":
            return {"email": f"customer{k}@example.com", "name": f"Customer {k}"}
        if collection == "events":
            raise ValueError("Stripe events are not seeded: they follow from changes to other objects")
        customer = given.get("customer") or self._a_customer()
        if collection == "subscriptions":
            return {"customer": customer, "status": "active",
                    "items": [{"id": f"si_{_random(14)}", "price": "price_basic", "quantity": 1}]}
        return {"customer": customer, "amount_due": 1000 * (k % 5 + 1), "status": "paid", "number": f"INV-{k:04d}"}

    def _a_customer(self) -> str:
        live = self.store.items("customers")
        return live[-1].id if live else self._insert("customers", self.sample("customers", 1, {})).id

    def render(self, collection: str, item: Item) -> dict:
        created = item.created // 1000
        head = {"id": item.id, "object": self.object_names[collection]}
        if collection == "customers":
            return {**head, "address": None, "balance": 0, "created": created, "currency": None,
                    "default_source": None, "delinquent": False, "description": None, "discount": None,
                    "email": None, "invoice_prefix": item.id[4:12].upper(),
                    "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None,
                                         "rendering_options": None},
                    "livemode": False, "metadata": {}, "name": None, "next_invoice_sequence": 1,
                    "phone": None, "preferred_locales": [], "shipping": None, "tax_exempt": "none",
                    "test_clock": None, **item.fields}
        if collection == "subscriptions":
            fields = dict(item.fields)
            items = [{"id": si["id"], "object": "subscription_item", "created": created, "metadata": {},
                      "price": {"id": si["price"], "object": "price"}, "quantity": si["quantity"],
                      "subscription": item.id} for si in fields.pop("items")]
            return {**head, "billing_cycle_anchor": created, "cancel_at": None, "cancel_at_period_end": False,
                    "canceled_at": None, "collection_method": "charge_automatically", "created": created,
                    "currency": "usd", "current_period_end": created + 30 * 86400,
                    "current_period_start": created, "days_until_due": None, "default_payment_method": None,
                    "description": None, "ended_at": None,
                    "items": {"object": "list", "data": items, "has_more": False, "total_count": len(items),
                              "url": f"/v1/subscription_items?subscription={item.id}"},
                    "livemode": False, "metadata": {}, "start_date": created, "status": "active",
                    "trial_end": None, "trial_start": None, **fields}
        if collection == "invoices":
            due = item.fields.get("amount_due", 0)
            paid = due if item.fields.get("status") == "paid" else 0
            return {**head, "amount_due": due, "amount_paid": paid, "amount_remaining": due - paid,
                    "created": created, "currency": "usd", "customer": None, "livemode": False, "metadata": {},
                    "paid": paid == due, "period_end": created, "period_start": created - 30 * 86400,
                    "subscription": None, **item.fields}
        return {**head, "api_version": "2023-08-16", "created": created, "livemode": False,
                "pending_webhooks": 0, "request": {"id": None, "idempotency_key": None}, **item.fields}

    def merge(self, collection: str, old: dict, changes: dict) -> dict:
        """An update changes only what it names; metadata merges key by key ("" removes a key)."""
        merged = {**old}
        for key, value in changes.items():
            if key == "metadata" and isinstance(value, dict):
                metadata = {**old.get("metadata", {}), **value}
                merged["metadata"] = {k: v for k, v in metadata.items() if v != ""}
            elif key == "metadata":
                merged["metadata"] = {}
            else:
                merged[key] = None if value == "" else value
        return merged

    def on_change(self, kind: str, collection: str, item: Item, previous: dict | None) -> None:
        if collection == "events":
            return
        data = {"object": self.render(collection, item)}
        if kind == "updated":
            before = self.render(collection, Item(item.id, previous, item.created, item.updated, item.seq))
            data["previous_attributes"] = {k: v for k, v in before.items() if data["object"].get(k) != v}
        event = {"type": f"{self.event_names[collection]}.{kind}", "data": data}
        self.store.add("events", self.new_id("events"), event, at=item.updated)

    def delete(self, collection: str, id) -> None:
        """Deleting a subscription behind the API's back cancels it, as DELETE does."""
        if self.collection(collection) != "subscriptions":
            return super().delete(collection, id)
        with self.store.lock:
            try:
                self.remove("subscriptions", str(id))
            except Reject as rejected:
                raise KeyError(f"subscription {id}: {rejected.answer.body}") from None

    # -- handlers ------------------------------------------------------------------------

    def _params(self, text: str, allowed: set[str] | None = None) -> dict:
        try:
            params = decode_stripe_form(text)
        except ValueError as exc:
            raise Reject(stripe_error(400, str(exc))) from None
        for name in params:
            if allowed is not None and name not in allowed:
                raise Reject(stripe_error(400, f"Received unknown parameter: {name}", param=name,
                                          code="parameter_unknown"))
        params.pop("expand", None)
        return params

    def _find(self, collection: str, id: str, param: str = "id") -> Item:
        item = self.store.find(collection, id)
        if item is None or item.deleted:
            raise Reject(stripe_error(404, f"No such {self.object_names[collection]}: '{id}'", param=param,
                                      code="resource_missing"))
        return item

    def _check(self, collection: str, params: dict, creating: bool) -> dict:
        if "email" in params and params["email"] and not _EMAIL.match(params["email"]):
            raise Reject(stripe_error(400, f"Invalid email address: {params['email']}", param="email",
                                      code="email_invalid"))
        if "balance" in params:
            try:
                params["balance"] = int(params["balance"])
            except (TypeError, ValueError):
                raise Reject(stripe_error(400, f"Invalid integer: {params['balance']}", param="balance")) from None
        if "metadata" in params and not isinstance(params["metadata"], dict | str):
            raise Reject(stripe_error(400, "Invalid hash", param="metadata"))
        if collection == "subscriptions":
            if creating:
                for name in ("customer", "items"):
                    if not params.get(name):
                        raise Reject(stripe_error(400, f"Missing required param: {name}.", param=name,
                                                  code="parameter_missing"))
                self._find("customers", params["customer"], param="customer")
            if "items" in params:
                params["items"] = self._subscription_items(params["items"])
            if "cancel_at_period_end" in params:
                params["cancel_at_period_end"] = params["cancel_at_period_end"] == "true"
        return params

    def _subscription_items(self, items) -> list[dict]:
        if not isinstance(items, list):
            raise Reject(stripe_error(400, "Invalid array", param="items"))
        out = []
        for i, entry in enumerate(items):
            if not isinstance(entry, dict) or not entry.get("price"):
                raise Reject(stripe_error(400, f"Missing required param: items[{i}][price].",
                                          param=f"items[{i}][price]", code="parameter_missing"))
            if not str(entry.get("quantity", "1")).isdigit():
                raise Reject(stripe_error(400, f"Invalid integer: {entry['quantity']}", param=f"items[{i}][quantity]"))
            out.append({"id": entry.get("id") or f"si_{_random(14)}", "price": entry["price"],
                        "quantity": int(entry.get("quantity", 1))})
        return out

    def idempotent(self, request: Received, handle: Callable[[], Answer]) -> Answer:
        key = request.header("idempotency-key")
        if not key:
            return handle()
        fingerprint = f"{request.method} {request.path} {request.body.decode()}"
        if key in self._idempotent:
            first, answer = self._idempotent[key]
            if first != fingerprint:
                return stripe_error(400, "Keys for idempotent requests can only be used with the same parameters "
                                         f"they were first used with. Try using a key other than '{key}' if you "
                                         "meant to execute a different request.", "idempotency_error")
            return Answer(answer.status, answer.body, [*answer.headers, ("idempotent-replayed", "true")])
        answer = handle()
        if answer.status < 400:
            self._idempotent[key] = (fingerprint, answer)
        return answer

    def create(self, request: Received, collection: str) -> Answer:
        params = self._check(collection, self._params(request.body.decode(), self.parameters[collection]), True)
        if collection == "subscriptions":
            params.setdefault("status", "trialing" if params.get("trial_period_days") else "active")
        item = self._insert(collection, self.merge(collection, {}, params))
        return Answer(200, self.render(collection, item))

    def update(self, request: Received, collection: str, id: str) -> Answer:
        item = self._find(collection, id)
        allowed = self.parameters[collection] - {"customer"}
        params = self._check(collection, self._params(request.body.decode(), allowed), False)
        canceled = item.fields.get("status") == "canceled"
        if collection == "subscriptions" and canceled and set(params) - {"metadata"}:
            raise Reject(stripe_error(400, "A canceled subscription can only update its cancellation_details "
                                           "and metadata."))
        if "items" in params:
            existing = {si["id"]: si for si in item.fields["items"]}
            params["items"] = list({**existing, **{si["id"]: si for si in params["items"]}}.values())
        self._modify(collection, item, self.merge(collection, item.fields, params))
        return Answer(200, self.render(collection, item))

    def remove(self, collection: str, id: str) -> Answer:
        item = self._find(collection, id)
        if collection == "subscriptions":  # DELETE cancels a subscription; it stays, canceled
            if item.fields.get("status") == "canceled":
                raise Reject(stripe_error(400, "A canceled subscription can only update its cancellation_details "
                                               "and metadata."))
            now = self.store.now() // 1000
            self._modify(collection, item, {**item.fields, "status": "canceled", "canceled_at": now, "ended_at": now},
                         kind="deleted")
            return Answer(200, self.render(collection, item))
        self._remove(collection, item)
        return Answer(200, {"id": id, "object": self.object_names[collection], "deleted": True})

    def retrieve(self, collection: str, id: str) -> Answer:
        item = self.store.find(collection, id)
        if collection == "customers" and item is not None and item.deleted:
            return Answer(200, {"id": id, "object": "customer", "deleted": True})
        return Answer(200, self.render(collection, self._find(collection, id)))

    def list(self, request: Received, collection: str) -> Answer:
        params = self._params(request.query)
        limit = params.get("limit", "10")
        if not limit.isdigit() or not 1 <= int(limit) <= 100:
            raise Reject(stripe_error(400, "Invalid limit: must be between 1 and 100", param="limit"))
        limit = int(limit)
        ordered = sorted(self.store.items(collection, deleted=True), key=lambda it: (it.created, it.seq),
                         reverse=True)
        ids = [it.id for it in ordered]
        for cursor in ("starting_after", "ending_before"):
            if cursor in params and params[cursor] not in ids:
                raise Reject(stripe_error(400, f"No such {self.object_names[collection]}: '{params[cursor]}'",
                                          param=cursor, code="resource_missing"))
        if "starting_after" in params:
            ordered = ordered[ids.index(params["starting_after"]) + 1:]
        elif "ending_before" in params:
            ordered = ordered[:ids.index(params["ending_before"])]
        backwards = "ending_before" in params  # the page just before the cursor, still newest first
        wanted = (it for it in (reversed(ordered) if backwards else ordered)
                  if it.deleted is None and self._matches(collection, it, params))
        page = list(itertools.islice(wanted, limit + 1))
        has_more, page = len(page) > limit, page[:limit]
        if backwards:
            page.reverse()
        return Answer(200, {"object": "list", "data": [self.render(collection, it) for it in page],
                            "has_more": has_more, "url": f"/v1/{collection}"})

    def _matches(self, collection: str, item: Item, params: dict) -> bool:
        created = params.get("created")
        if created is not None:
            bounds = created if isinstance(created, dict) else {"eq": created}
            at = item.created // 1000
            tests = {"eq": at.__eq__, "gt": at.__gt__, "gte": at.__ge__, "lt": at.__lt__, "lte": at.__le__}
            for op, value in bounds.items():
                if op not in tests or not str(value).lstrip("-").isdigit():
                    raise Reject(stripe_error(400, f"Invalid integer: {value}", param=f"created[{op}]"))
                if not tests[op](int(value)):
                    return False
        fields = item.fields
        if collection == "events":
            types = params.get("types") or ([params["type"]] if "type" in params else None)
            return types is None or any(
                fields["type"].startswith(t[:-1]) if t.endswith("*") else fields["type"] == t for t in types)
        if "customer" in params and fields.get("customer") != params["customer"]:
            return False
        if "email" in params and fields.get("email") != params["email"]:
            return False
        status = params.get("status")
        if collection == "subscriptions" and status is None:
            return fields.get("status") != "canceled"
        return status in (None, "all") or fields.get("status") == status


# ---------------------------------------------------------------------------------------------
# Salesforce
# ---------------------------------------------------------------------------------------------


def salesforce_time(ms: int) -> str:
    return _utc(ms).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}+0000"


def salesforce_error(status: int, code: str, message: str, fields: list[str] | None = None) -> Answer:
    entry = {"message": message, "errorCode": code}
    if fields is not None:
        entry["fields"] = fields
    return Answer(status, [entry])


def _case_safe(id15: str) -> str:
    """Salesforce's 18-character id: 3 letters telling which characters of the 15 are upper case."""
    letters = string.ascii_uppercase + "012345"
    suffix = ""
    for chunk in (id15[0:5], id15[5:10], id15[10:15]):
        suffix += letters[sum(1 << i for i, ch in enumerate(chunk) if ch.isupper())]
    return id15 + suffix


_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


class SalesforceFake(FakeProvider):
    """Salesforce REST API v59.0 (any vNN.N path works): sObjects CRUD, SOQL query, deleted/updated.

    Records carry attributes, Id, their fields (null when unset), IsDeleted, CreatedDate,
    LastModifiedDate and SystemModstamp ("2024-01-15T10:30:00.000+0000"). POST answers 201
    {"id","success":true,"errors":[]}; PATCH and DELETE answer 204 with no body. Errors are a list:
    [{"message","errorCode","fields"}]. A deleted record answers 404 ENTITY_IS_DELETED.

    SOQL: `SELECT f1, f2 | FIELDS(ALL) FROM T [WHERE f op literal [AND ...]] [ORDER BY f [ASC|DESC], ...]
    [LIMIT n]` with op one of = != > >= < <= and literals of datetimes, 'strings', numbers, true,
    false, null. Pages of `query_batch_size` records (2000, as Salesforce; the header
    `Sforce-Query-Options: batchSize=N` asks for fewer), the rest behind nextRecordsUrl
    (/query/<locator>-<offset>), a snapshot taken when the query ran. /queryAll includes deleted records.
    """

    name = "salesforce"
    id_field = "Id"
    types = {
        "Contact": {"prefix": "003", "required": "LastName",
                    "fields": ["AccountId", "FirstName", "LastName", "Email", "Phone", "MobilePhone", "Title",
                               "Department", "Description", "LeadSource", "MailingCity", "MailingCountry"]},
        "Account": {"prefix": "001", "required": "Name",
                    "fields": ["Name", "Type", "Industry", "Phone", "Website", "Description", "BillingCity",
                               "BillingCountry", "NumberOfEmployees", "AnnualRevenue"]},
        "Task": {"prefix": "00T", "required": "Subject",
                 "fields": ["Subject", "Status", "Priority", "WhoId", "WhatId", "ActivityDate", "Description"]},
    }
    defaults = {"Task": {"Status": "Not Started", "Priority": "Normal"}}
    system_fields = ["Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp"]
    date_fields = {"CreatedDate", "LastModifiedDate", "SystemModstamp"}
    aliases = {"contact": "Contact", "account": "Account", "task": "Task",
               "Contact": "Contact", "Account": "Account", "Task": "Task"}
    query_batch_size = 2000

    def __init__(self):
        super().__init__()
        self._cursors: dict[str, tuple[list[dict], int]] = {}  # locator -> (rows, batch size)

    def make_token(self) -> str:
        return "00D" + _random(12) + "!" + _random(40)

    def new_id(self, collection: str) -> str:
        n = next(self._serial) + 100_000
        digits = ""
        while n:
            n, r = divmod(n, 62)
            digits = _BASE62[r] + digits
        return _case_safe(self.types[collection]["prefix"] + "5g0000" + digits.rjust(6, "0"))

    def unauthorized(self) -> Answer:
        return salesforce_error(401, "INVALID_SESSION_ID", "Session expired or invalid")

    def budget_headers(self, limit: _Limit) -> list[tuple[str, str]]:
        """The org's API allowance (a rolling 24 h in Salesforce; `window` here): used/allowed."""
        return [("Sforce-Limit-Info", f"api-usage={limit.used}/{limit.allowed}")]

    def rate_limited(self, limit: _Limit) -> Answer:
        return salesforce_error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")

    def error(self, status: int, message: str) -> Answer:
        """Salesforce has no 429: its API limit is 403 REQUEST_LIMIT_EXCEEDED, which fail_next gives
        with body=[{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]."""
        known = {403: ("INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object id"),
                 404: ("NOT_FOUND", "The requested resource does not exist"),
                 503: ("SERVER_UNAVAILABLE", "Server is unavailable; please retry")}
        code, message = known.get(status, ("BAD_REQUEST" if status < 500 else "UNKNOWN_EXCEPTION", message))
        return salesforce_error(status, code, message)

    def routes(self):
        data = "/services/data/{version}"
        return [
            _route("GET", data + "/query", lambda r, version: self.query(r, version, deleted=False)),
            _route("GET", data + "/queryAll", lambda r, version: self.query(r, version, deleted=True)),
            _route("GET", data + "/query/{locator}", lambda r, version, locator: self.more(version, locator)),
            _route("GET", data + "/queryAll/{locator}", lambda r, version, locator: self.more(version, locator)),
            _route("GET", data + "/sobjects/{sobject}/deleted", self.get_deleted),
            _route("GET", data + "/sobjects/{sobject}/updated", self.get_updated),
            _route("POST", data + "/sobjects/{sobject}", self.create),
            _route("GET", data + "/sobjects/{sobject}/{id}", self.retrieve),
            _route("PATCH", data + "/sobjects/{sobject}/{id}", self.update),
            _route("DELETE", data + "/sobjects/{sobject}/{id}", self.remove),
        ]

    def known_collections(self):
        return set(self.types)

    def sample(self, collection: str, k: int, given: dict) -> dict:
        return {"Contact": {"FirstName": f"First{k}", "LastName": f"Last{k}", "Email": f"contact{k}@example.com"},
                "Account": {"Name": f"Account {k}"},
                "Task": {"Subject": f"Task {k}"}}[collection]

    def render(self, collection: str, item: Item, version: str = "v59.0") -> dict:
        spec = self.types[collection]
        url = f"/services/data/{version}/sobjects/{collection}/{item.id}"
        record = {"attributes": {"type": collection, "url": url}, "Id": item.id}
        record.update({name: None for name in spec["fields"]})
        record.update(self.defaults.get(collection, {}))
        record.update(item.fields)
        if collection == "Contact":
            record["Name"] = " ".join(filter(None, [record["FirstName"], record["LastName"]]))
        record.update({"IsDeleted": item.deleted is not None, "CreatedDate": salesforce_time(item.created),
                       "LastModifiedDate": salesforce_time(item.updated),
                       "SystemModstamp": salesforce_time(item.updated)})
        return record

    # -- handlers ------------------------------------------------------------------------

    def _type(self, sobject: str) -> dict:
        if sobject not in self.types:
            raise Reject(salesforce_error(404, "NOT_FOUND", "The requested resource does not exist"))
        return self.types[sobject]

    def _find(self, sobject: str, id: str) -> Item:
        self._type(sobject)
        item = self.store.find(sobject, id)
        if item is None:
            raise Reject(salesforce_error(404, "NOT_FOUND", "The requested resource does not exist"))
        if item.deleted:
            raise Reject(salesforce_error(404, "ENTITY_IS_DELETED", "entity is deleted", []))
        return item

    def _fields(self, request: Received, sobject: str, creating: bool, current: dict) -> dict:
        spec = self._type(sobject)
        try:
            fields = json.loads(request.body or b"null")
        except ValueError:
            fields = None
        if not isinstance(fields, dict):
            raise Reject(salesforce_error(400, "JSON_PARSER_ERROR", "The request body must be a JSON object"))
        read_only = [name for name in fields if name in self.system_fields or (sobject == "Contact" and name == "Name")]
        if read_only:
            raise Reject(salesforce_error(400, "INVALID_FIELD_FOR_INSERT_UPDATE",
                                          f"Unable to create/update fields: {', '.join(read_only)}. Please check the "
                                          "security settings of this field and verify that it is read/write for "
                                          "your profile or permission set.", read_only))
        canonical = {known.lower(): known for known in spec["fields"]}  # field names ignore case
        for name in list(fields):
            if name.lower() in canonical:
                fields[canonical[name.lower()]] = fields.pop(name)
            elif not name.endswith("__c"):
                raise Reject(salesforce_error(400, "INVALID_FIELD",
                                              f"No such column '{name}' on sobject of type {sobject}", []))
        email = fields.get("Email")
        if email and not _EMAIL.match(str(email)):
            raise Reject(salesforce_error(400, "INVALID_EMAIL_ADDRESS", "Invalid email", ["Email"]))
        required = spec["required"]
        if (creating or required in fields) and not {**current, **fields}.get(required):
            raise Reject(salesforce_error(400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{required}]",
                                          [required]))
        return fields

    def create(self, request: Received, version: str, sobject: str) -> Answer:
        fields = self._fields(request, sobject, True, {})
        item = self._insert(sobject, fields)
        return Answer(201, {"id": item.id, "success": True, "errors": []})

    def retrieve(self, request: Received, version: str, sobject: str, id: str) -> Answer:
        record = self.render(sobject, self._find(sobject, id), version)
        wanted = query_params(request).get("fields")
        if wanted:
            names = [name.strip() for name in wanted.split(",")]
            record = {"attributes": record["attributes"], **{name: record.get(name) for name in names}}
        return Answer(200, record)

    def update(self, request: Received, version: str, sobject: str, id: str) -> Answer:
        item = self._find(sobject, id)
        fields = self._fields(request, sobject, False, item.fields)
        self._modify(sobject, item, self.merge(sobject, item.fields, fields))
        return Answer(204)

    def remove(self, request: Received, version: str, sobject: str, id: str) -> Answer:
        self._remove(sobject, self._find(sobject, id))
        return Answer(204)

    def _window(self, request: Received) -> tuple[int, int]:
        params = query_params(request)
        try:
            return parse_iso(params["start"]), parse_iso(params["end"])
        except KeyError as missing:
            raise Reject(salesforce_error(400, "MISSING_ARGUMENT", f"Missing required parameter: {missing}")) from None
        except ValueError:
            raise Reject(salesforce_error(400, "INVALID_DATE_FORMAT",
                                          "start and end must be ISO-8601 date-times, e.g. 2024-01-01T00:00:00+00:00"
                                          )) from None

    def get_deleted(self, request: Received, version: str, sobject: str) -> Answer:
        """Deletions in [start, end]. (Salesforce rounds latestDateCovered down to the minute, so a sync
        sees a deletion up to a minute late; here it is `end` or now, to keep tests quick.)"""
        self._type(sobject)
        start, end = self._window(request)
        end = min(end, self.store.now())
        found = [it for c, it in self.store.deletions if c == sobject and start <= it.deleted <= end]
        earliest = min((it.deleted for c, it in self.store.deletions if c == sobject), default=start)
        return Answer(200, {"deletedRecords": [{"id": it.id, "deletedDate": salesforce_time(it.deleted)}
                                               for it in found],
                            "earliestDateAvailable": salesforce_time(earliest),
                            "latestDateCovered": salesforce_time(end)})

    def get_updated(self, request: Received, version: str, sobject: str) -> Answer:
        self._type(sobject)
        start, end = self._window(request)
        end = min(end, self.store.now())
        ids = [it.id for it in self.store.items(sobject) if start <= it.updated <= end]
        return Answer(200, {"ids": ids, "latestDateCovered": salesforce_time(end)})

    # -- SOQL ----------------------------------------------------------------------------

    _SOQL = re.compile(r"^\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<object>\w+)"
                       r"(?:\s+WHERE\s+(?P<where>.+?))?(?:\s+ORDER\s+BY\s+(?P<order>.+?))?"
                       r"(?:\s+LIMIT\s+(?P<limit>\d+))?\s*$", re.I | re.S)
    _CONDITION = re.compile(r"^\s*(\w+)\s*(>=|<=|!=|=|>|<)\s*(.+?)\s*$", re.S)

    def query(self, request: Received, version: str, deleted: bool) -> Answer:
        soql = query_params(request).get("q")
        match = self._SOQL.match(soql or "")
        if not match:
            raise Reject(salesforce_error(400, "MALFORMED_QUERY", f"unexpected token in query: {soql!r}"))
        sobject = next((t for t in self.types if t.lower() == match["object"].lower()), None)
        if sobject is None:
            raise Reject(salesforce_error(400, "INVALID_TYPE", f"sObject type '{match['object']}' is not supported."))
        names = self._columns(sobject, match["fields"])
        where = re.split(r"\s+AND\s+", match["where"] or "", flags=re.I)
        conditions = [self._condition(sobject, text) for text in where if text.strip()]
        rows = [self.render(sobject, it, version) for it in self.store.items(sobject, deleted=deleted)]
        rows = [row for row in rows if all(test(row) for test in conditions)]
        for name, descending in reversed(self._order(sobject, match["order"])):
            rows.sort(key=lambda row: (row[name] is None, row[name] or ""), reverse=descending)
        if match["limit"]:
            rows = rows[:int(match["limit"])]
        rows = [{"attributes": row["attributes"], **{name: row[name] for name in names}} for row in rows]
        options = dict(part.strip().split("=", 1) for part in (request.header("sforce-query-options") or "").split(",")
                       if "=" in part)
        batch = min(self.query_batch_size, int(options.get("batchSize", self.query_batch_size)))
        locator = "01g" + _random(15)
        self._cursors[locator] = (rows, batch)
        return self._page(version, locator, 0)

    def more(self, version: str, locator_offset: str) -> Answer:
        locator, _, offset = locator_offset.rpartition("-")
        if locator not in self._cursors or not offset.isdigit():
            raise Reject(salesforce_error(400, "INVALID_QUERY_LOCATOR", "invalid query locator"))
        return self._page(version, locator, int(offset))

    def _page(self, version: str, locator: str, offset: int) -> Answer:
        rows, batch = self._cursors[locator]
        page = rows[offset:offset + batch]
        body = {"totalSize": len(rows), "done": offset + batch >= len(rows), "records": page}
        if not body["done"]:
            body["nextRecordsUrl"] = f"/services/data/{version}/query/{locator}-{offset + batch}"
        return Answer(200, body)

    def _field(self, sobject: str, name: str) -> str:
        for known in self.system_fields + self.types[sobject]["fields"] + (["Name"] if sobject == "Contact" else []):
            if known.lower() == name.lower():
                return known
        raise Reject(salesforce_error(400, "INVALID_FIELD", f"No such column '{name}' on entity '{sobject}'. If you "
                                      "are attempting to use a custom field, be sure to append the '__c' after the "
                                      "custom field name."))

    def _columns(self, sobject: str, text: str) -> list[str]:
        names = []
        for part in (p.strip() for p in text.split(",")):
            if part.upper() in ("FIELDS(ALL)", "FIELDS(STANDARD)"):
                names += [n for n in self.render(sobject, Item("", {}, 0, 0, 0)) if n != "attributes"]
            else:
                names.append(self._field(sobject, part))
        return list(dict.fromkeys(names))

    def _order(self, sobject: str, text: str | None) -> list[tuple[str, bool]]:
        order = []
        for part in filter(None, (p.strip() for p in (text or "").split(","))):
            words = part.split()
            order.append((self._field(sobject, words[0]), len(words) > 1 and words[1].upper() == "DESC"))
        return order

    def _condition(self, sobject: str, text: str) -> Callable[[dict], bool]:
        match = self._CONDITION.match(text)
        if not match:
            raise Reject(salesforce_error(400, "MALFORMED_QUERY", f"unexpected token: {text.strip()!r}"))
        name, op, literal = self._field(sobject, match[1]), match[2], match[3]
        value = self._literal(literal)
        if name in self.date_fields:
            if not isinstance(value, int) or isinstance(value, bool):
                raise Reject(salesforce_error(400, "INVALID_FIELD", f"value of filter criterion for field '{name}' "
                                              "must be of type dateTime and should not be enclosed in quotes"))
            key = lambda row: parse_iso(row[name])  # noqa: E731
        else:
            key = lambda row: row[name]  # noqa: E731
        compare = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, ">": lambda a, b: a is not None and a > b,
                   ">=": lambda a, b: a is not None and a >= b, "<": lambda a, b: a is not None and a < b,
                   "<=": lambda a, b: a is not None and a <= b}[op]
        return lambda row: compare(key(row), value)

    @staticmethod
    def _literal(text: str):
        if text.startswith("'") and text.endswith("'"):
            return text[1:-1].replace("\\'", "'")
        lowered = text.lower()
        if lowered in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[lowered]
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}T\S+", text):
            try:
                return parse_iso(text)
            except ValueError:
                pass
        try:
            return float(text)
        except ValueError:
            raise Reject(salesforce_error(400, "MALFORMED_QUERY", f"unexpected token: '{text}'")) from None


# ---------------------------------------------------------------------------------------------
# HubSpot
# ---------------------------------------------------------------------------------------------


def hubspot_time(ms: int) -> str:
    return _utc(ms).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def hubspot_error(status: int, message: str, category: str, **extra) -> Answer:
    return Answer(status, {"status": "error", "message": message, "correlationId": str(uuid.uuid4()),
                           "category": category, **extra})


class HubSpotFake(FakeProvider):
    """HubSpot CRM v3 objects: contacts, companies, deals.

    Objects: {"id","properties":{...},"createdAt","updatedAt","archived"} with times like
    "2024-01-15T10:30:00.123Z"; property values are strings. Reads return the object type's default
    properties plus those named in `properties` (a comma list, or a list in a search body); creates
    and updates answer with every stored property. DELETE archives (204): the object leaves the
    list and GET answers 404 unless `archived=true`. Contacts' emails are unique (409 CONFLICT).

    OAuth (v1): POST /oauth/v1/token, form-encoded `grant_type=refresh_token&refresh_token=...`
    with the refresh token an installed app holds (`fake.refresh_token`), answers a new access token
    (`{"token_type": "bearer", "refresh_token", "access_token", "expires_in": 1800}`), accepted from
    then on beside `fake.token`; any other refresh token, 400 `{"status": "BAD_REFRESH_TOKEN", ...}`.

    Lists: `limit` (max 100, default 10) and `after` (the `paging.next.after` of the previous page),
    ordered by id. Search: POST .../search {"filterGroups":[{"filters":[{"propertyName","operator",
    "value"}]}], "sorts":[{"propertyName","direction"}], "properties", "limit" (max 200), "after"};
    operators EQ NEQ LT LTE GT GTE BETWEEN IN NOT_IN HAS_PROPERTY NOT_HAS_PROPERTY CONTAINS_TOKEN
    NOT_CONTAINS_TOKEN; dates as epoch ms or ISO; at most 10,000 results reachable, as in HubSpot.
    """

    name = "hubspot"
    aliases = {"contact": "contacts", "company": "companies", "deal": "deals",
               "contacts": "contacts", "companies": "companies", "deals": "deals"}
    properties = {
        "contacts": ["email", "firstname", "lastname", "phone", "mobilephone", "company", "website", "jobtitle",
                     "lifecyclestage", "hs_lead_status", "city", "state", "country", "zip", "address"],
        "companies": ["name", "domain", "industry", "phone", "city", "state", "country", "numberofemployees",
                      "annualrevenue", "description", "lifecyclestage", "website"],
        "deals": ["dealname", "amount", "dealstage", "pipeline", "closedate", "dealtype", "description",
                  "hubspot_owner_id"],
    }
    defaults = {
        "contacts": ["createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"],
        "companies": ["createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"],
        "deals": ["amount", "closedate", "createdate", "dealname", "dealstage", "hs_lastmodifieddate",
                  "hs_object_id", "pipeline"],
    }
    read_only = {"createdate", "hs_object_id", "lastmodifieddate", "hs_lastmodifieddate"}
    dates = {"createdate", "lastmodifieddate", "hs_lastmodifieddate", "closedate"}
    numbers = {"amount", "numberofemployees", "annualrevenue"}

    def make_token(self) -> str:
        return "pat-na1-" + str(uuid.uuid4())

    def new_id(self, collection: str) -> str:
        return str(10_000_000_000 + next(self._serial))

    def __init__(self):
        super().__init__()
        self.refresh_token = str(uuid.uuid4())  # an installed app's: /oauth/v1/token trades it for access tokens
        self.refreshed_tokens: set[str] = set()  # the access tokens it bought

    def answer(self, request: Received) -> Answer:
        if request.path == "/oauth/v1/token":  # the app's own credentials go in the form, no bearer token
            return self.oauth_token(request)
        return super().answer(request)

    def authorized(self, request: Received) -> bool:
        sent = request.header("authorization")
        return super().authorized(request) or sent in {f"Bearer {token}" for token in self.refreshed_tokens}

    def budget_headers(self, limit: _Limit) -> list[tuple[str, str]]:
        """developers.hubspot.com, "API usage guidelines and limits": the window's allowance."""
        return [("X-HubSpot-RateLimit-Max", str(limit.allowed)),
                ("X-HubSpot-RateLimit-Remaining", str(limit.remaining)),
                ("X-HubSpot-RateLimit-Interval-Milliseconds", str(round(limit.window * 1000)))]

    def rate_limited(self, limit: _Limit) -> Answer:
        return hubspot_error(429, "You have reached your ten_secondly_rolling limit.", "RATE_LIMITS",
                             errorType="RATE_LIMIT", policyName="TEN_SECONDLY_ROLLING")

    def oauth_token(self, request: Received) -> Answer:
        form = dict(parse_qsl(request.body.decode(errors="replace")))
        if request.method != "POST" or form.get("grant_type") != "refresh_token" \
                or form.get("refresh_token") != self.refresh_token:
            return Answer(400, {"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token",
                                "correlationId": str(uuid.uuid4())})
        access_token = "hubspot-oauth-" + str(uuid.uuid4())
        self.refreshed_tokens.add(access_token)
        return Answer(200, {"token_type": "bearer", "refresh_token": self.refresh_token,
                            "access_token": access_token, "expires_in": 1800})

    def unauthorized(self) -> Answer:
        return hubspot_error(401, "Authentication credentials not found. This API supports OAuth 2.0 authentication "
                                  "and you can find more details at "
                                  "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                             "INVALID_AUTHENTICATION")

    def error(self, status: int, message: str) -> Answer:
        if status == 429:
            return hubspot_error(429, "You have reached your secondly limit.", "RATE_LIMITS", errorType="RATE_LIMIT",
                                 policyName="SECONDLY")
        if status == 403:
            return hubspot_error(403, "This app hasn't been granted all required scopes to make this call. Read "
                                      "more about required scopes here: https://developers.hubspot.com/scopes.",
                                 "MISSING_SCOPES")
        categories = {400: "VALIDATION_ERROR", 404: "OBJECT_NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
        return hubspot_error(status, "resource not found" if status == 404 else message,
                             categories.get(status, "INTERNAL_ERROR"))

    def routes(self):
        base = "/crm/v3/objects/{object_type}"
        return [
            _route("POST", base + "/search", self.search),
            _route("GET", base, self.list),
            _route("POST", base, self.create),
            _route("GET", base + "/{id}", self.retrieve),
            _route("PATCH", base + "/{id}", self.update),
            _route("DELETE", base + "/{id}", self.archive),
        ]

    def sample(self, collection: str, k: int, given: dict) -> dict:
        return {"contacts": {"email": f"contact{k}@example.com", "firstname": f"First{k}", "lastname": f"Last{k}"},
                "companies": {"name": f"Company {k}", "domain": f"company{k}.example.com"},
                "deals": {"dealname": f"Deal {k}", "amount": str(1000 * k), "dealstage": "appointmentscheduled",
                          "pipeline": "default"}}[collection]

    def fields_of(self, obj: dict) -> dict:
        return obj["properties"] if "properties" in obj else super().fields_of(obj)

    def render(self, collection: str, item: Item, wanted: list[str] | None = None) -> dict:
        """`wanted`: the properties a read asked for (None: every stored one, as writes answer)."""
        stored = {k: None if v is None else str(v) for k, v in item.fields.items()}
        system = {"createdate": hubspot_time(item.created), "hs_object_id": item.id,
                  "hs_lastmodifieddate": hubspot_time(item.updated)}
        if collection == "contacts":
            system["lastmodifieddate"] = system["hs_lastmodifieddate"]
        every = {**stored, **system}
        names = every if wanted is None else [*self.defaults[collection], *wanted]
        obj = {"id": item.id, "properties": {name: every.get(name) for name in names},
               "createdAt": hubspot_time(item.created), "updatedAt": hubspot_time(item.updated),
               "archived": item.deleted is not None}
        if item.deleted is not None:
            obj["archivedAt"] = hubspot_time(item.deleted)
        return obj

    # -- handlers ------------------------------------------------------------------------

    def _type(self, object_type: str) -> str:
        if object_type not in self.properties:
            raise Reject(hubspot_error(400, f"Unable to infer object type from: {object_type}", "VALIDATION_ERROR"))
        return object_type

    def _find(self, object_type: str, id: str, archived: bool = False) -> Item:
        item = self.store.find(self._type(object_type), id)
        if item is None or (item.deleted is not None) != archived:
            raise Reject(self.error(404, "resource not found"))
        return item

    def _body(self, request: Received) -> dict:
        try:
            body = json.loads(request.body or b"null")
        except ValueError as exc:
            raise Reject(hubspot_error(400, f"Invalid input JSON: {exc}", "VALIDATION_ERROR")) from None
        if not isinstance(body, dict):
            raise Reject(hubspot_error(400, "Invalid input JSON: expected an object", "VALIDATION_ERROR"))
        return body

    def _properties(self, request: Received, object_type: str, id: str | None = None) -> dict:
        properties = self._body(request).get("properties")
        if not isinstance(properties, dict):
            raise Reject(hubspot_error(400, "Invalid input JSON: `properties` must be an object",
                                       "VALIDATION_ERROR"))
        invalid = []
        for name, value in properties.items():
            problem = None
            if name in self.read_only:
                problem = ("READ_ONLY_VALUE", f'"{name}" is a read only property; its value cannot be set.')
            elif name not in self.properties[object_type]:
                problem = ("PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist')
            elif name == "email" and value and not _EMAIL.match(str(value)):
                problem = ("INVALID_EMAIL", f"Email address {value} is invalid")
            elif name in self.numbers and value not in (None, ""):
                try:
                    float(value)
                except (TypeError, ValueError):
                    problem = ("INVALID_FLOAT", f"{value} was not a valid number.")
            if problem:
                invalid.append({"isValid": False, "message": problem[1], "error": problem[0], "name": name,
                                "localizedErrorMessage": problem[1]})
        if invalid:
            reasons = json.dumps(invalid, separators=(",", ":"))
            raise Reject(hubspot_error(400, f"Property values were not valid: {reasons}", "VALIDATION_ERROR"))
        email = properties.get("email")
        if object_type == "contacts" and email:
            for other in self.store.items("contacts"):
                if other.id != id and str(other.fields.get("email", "")).lower() == str(email).lower():
                    raise Reject(hubspot_error(409, f"Contact already exists. Existing ID: {other.id}", "CONFLICT"))
        return {k: None if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
                for k, v in properties.items()}

    @staticmethod
    def _wanted(params: dict) -> list[str]:
        return [p for p in params.get("properties", "").split(",") if p]

    def create(self, request: Received, object_type: str) -> Answer:
        item = self._insert(object_type, self._properties(request, self._type(object_type)))
        return Answer(201, self.render(object_type, item))

    def retrieve(self, request: Received, object_type: str, id: str) -> Answer:
        params = query_params(request)
        item = self._find(object_type, id, archived=params.get("archived") == "true")
        return Answer(200, self.render(object_type, item, self._wanted(params)))

    def update(self, request: Received, object_type: str, id: str) -> Answer:
        item = self._find(object_type, id)
        changes = self._properties(request, object_type, id)
        self._modify(object_type, item, self.merge(object_type, item.fields, changes))
        return Answer(200, self.render(object_type, item))

    def archive(self, request: Received, object_type: str, id: str) -> Answer:
        item = self.store.find(self._type(object_type), id)
        if item is not None and item.deleted is None:
            self._remove(object_type, item)
        return Answer(204)  # archiving an archived or unknown id also answers 204, as HubSpot does

    @staticmethod
    def _limit(value, cap: int) -> int:
        if not str(value).isdigit() or not 1 <= int(value) <= cap:
            raise Reject(hubspot_error(400, f"limit must be between 1 and {cap}", "VALIDATION_ERROR"))
        return int(value)

    def list(self, request: Received, object_type: str) -> Answer:
        """Ordered by id; `after` is the id to start from (the last one seen plus one, as HubSpot gives it)."""
        params = query_params(request)
        limit = self._limit(params.get("limit", "10"), 100)
        archived = params.get("archived") == "true"
        after = int(params["after"]) if params.get("after", "").isdigit() else 0
        remaining = sorted((it for it in self.store.items(self._type(object_type), deleted=True)
                            if (it.deleted is not None) == archived and int(it.id) >= after),
                           key=lambda it: int(it.id))
        body = {"results": [self.render(object_type, it, self._wanted(params)) for it in remaining[:limit]]}
        if len(remaining) > limit:
            next_after = str(int(remaining[limit - 1].id) + 1)
            link = f"{self.base_url}{request.path}?{urlencode({**params, 'after': next_after})}"
            body["paging"] = {"next": {"after": next_after, "link": link}}
        return Answer(200, body)

    def search(self, request: Received, object_type: str) -> Answer:
        """Filter groups are OR-ed, the filters within one AND-ed; `after` is an offset into the results."""
        body = self._body(request)
        limit = self._limit(body.get("limit", 10), 200)
        after = int(body["after"]) if str(body.get("after", "")).isdigit() else 0
        if after >= 10_000:
            raise Reject(hubspot_error(400, "Search results are limited to 10,000: narrow the filters",
                                       "VALIDATION_ERROR"))
        items = self.store.items(self._type(object_type))
        groups = [[self._filter(object_type, f) for f in group.get("filters", [])]
                  for group in body.get("filterGroups") or []]
        if groups:
            items = [it for it in items if any(all(test(it) for test in group) for group in groups)]
        items.sort(key=lambda it: int(it.id))
        for sort in reversed(body.get("sorts") or []):
            name = sort if isinstance(sort, str) else sort.get("propertyName")
            descending = not isinstance(sort, str) and sort.get("direction") == "DESCENDING"
            items.sort(key=lambda it: self._sort_key(object_type, it, name), reverse=descending)
        wanted = body.get("properties") or []
        answer = {"total": len(items),
                  "results": [self.render(object_type, it, wanted) for it in items[after:after + limit]]}
        if len(items) > after + limit:
            answer["paging"] = {"next": {"after": str(after + limit)}}
        return Answer(200, answer)

    @staticmethod
    def _value(object_type: str, item: Item, name: str):
        """A property's value without rendering the object (a search scans every one): times in epoch ms."""
        system = {"createdate": item.created, "hs_lastmodifieddate": item.updated, "hs_object_id": item.id}
        if object_type == "contacts":
            system["lastmodifieddate"] = item.updated
        return system[name] if name in system else item.fields.get(name)

    def _sort_key(self, object_type: str, item: Item, name: str):
        value = self._value(object_type, item, name)
        return (value is None, self._comparable(name, value) if value is not None else 0)

    def _comparable(self, name: str, value):
        if isinstance(value, int):  # a time from _value
            return value
        if name in self.dates:
            text = str(value)
            return int(text) if text.isdigit() else parse_iso(text)
        if name in self.numbers or name == "hs_object_id":
            return float(value)
        return str(value).lower()

    def _filter(self, object_type: str, flt: dict) -> Callable[[Item], bool]:
        """One search filter as a test of an object."""
        name, op = flt.get("propertyName"), flt.get("operator", "EQ")
        value_of = lambda item: self._value(object_type, item, name)  # noqa: E731
        if op in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
            return lambda item: (value_of(item) not in (None, "")) == (op == "HAS_PROPERTY")
        if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            token = str(flt.get("value", "")).lower()
            return lambda item: (token in str(value_of(item) or "").lower()) == (op == "CONTAINS_TOKEN")
        try:
            if op in ("IN", "NOT_IN"):
                values = [self._comparable(name, v) for v in flt.get("values", [])]
                test = lambda mine: (mine in values) == (op == "IN")  # noqa: E731
            elif op == "BETWEEN":
                low, high = self._comparable(name, flt.get("value")), self._comparable(name, flt.get("highValue"))
                test = lambda mine: low <= mine <= high  # noqa: E731
            else:
                theirs = self._comparable(name, flt.get("value"))
                compare = {"EQ": operator.eq, "NEQ": operator.ne, "LT": operator.lt, "LTE": operator.le,
                           "GT": operator.gt, "GTE": operator.ge}
                if op not in compare:
                    raise Reject(hubspot_error(400, f"Unknown operator {op}", "VALIDATION_ERROR"))
                test = lambda mine: compare[op](mine, theirs)  # noqa: E731
        except (TypeError, ValueError):
            raise Reject(hubspot_error(400, f"Invalid value for filter on {name}", "VALIDATION_ERROR")) from None

        def matches(item: Item) -> bool:
            value = value_of(item)
            if value in (None, ""):  # an object without the property matches only the negative operators
                return op in ("NEQ", "NOT_IN")
            return test(self._comparable(name, value))

        return matches


# ---------------------------------------------------------------------------------------------
# GitHub
# ---------------------------------------------------------------------------------------------


def _whole(text: str | None, default: int) -> int:
    """A query parameter as a whole number; GitHub takes anything else as the default."""
    return int(text) if text and text.isdigit() else default


def github_time(ms: int) -> str:
    return _utc(ms).strftime("%Y-%m-%dT%H:%M:%SZ")


def github_error(status: int, message: str, **extra) -> Answer:
    return Answer(status, {"message": message, "documentation_url": "https://docs.github.com/rest",
                           "status": str(status), **extra})


class GitHubFake(FakeProvider):
    """GitHub REST: a repository's issues (collections are "owner/repo"; a repository exists once seeded).

    GET /repos/{owner}/{repo}/issues: `state` open (default) | closed | all, `since` (ISO-8601:
    updated at or after), `sort` created (default) | updated, `direction` desc (default) | asc,
    `per_page` (default 30, max 100), `page`. Paging is in the `Link` header, with absolute URLs
    of the form GitHub uses: {base}/repositories/{repo id}/issues?...&page=N, rel next/last/prev/first.
    Times have whole seconds ("2024-01-15T10:30:00Z"). Tokens go as `Bearer` or `token`.
    Also GET/PATCH /repos/{owner}/{repo}/issues/{number} and POST /repos/{owner}/{repo}/issues;
    an issue deleted behind the API's back answers 410, as GitHub does. GET /user answers the
    token's user (`octocat`): what checks a token.
    """

    name = "github"
    id_field = "number"
    repo = "octocat/Hello-World"

    def __init__(self):
        super().__init__()
        self.aliases = {"issue": self.repo, "issues": self.repo}

    def make_token(self) -> str:
        return "ghp_" + _random(36)

    def authorized(self, request: Received) -> bool:
        return request.header("authorization") in (f"Bearer {self.token}", f"token {self.token}")

    def unauthorized(self) -> Answer:
        return github_error(401, "Bad credentials")

    def budget_headers(self, limit: _Limit) -> list[tuple[str, str]]:
        """docs.github.com, "Rate limits for the REST API": the reset in whole epoch seconds."""
        return [("x-ratelimit-limit", str(limit.allowed)), ("x-ratelimit-remaining", str(limit.remaining)),
                ("x-ratelimit-reset", str(math.ceil(limit.resets_at))), ("x-ratelimit-used", str(limit.used)),
                ("x-ratelimit-resource", "core")]

    def rate_limited(self, limit: _Limit) -> Answer:
        """GitHub's primary rate limit: 403 (not 429), remaining 0 and the reset in the headers."""
        return github_error(403, "API rate limit exceeded for user ID 1. If you reach out to GitHub Support "
                                 "for help, please include the request ID.")

    def error(self, status: int, message: str) -> Answer:
        if status == 404:
            message = "Not Found"
        if status == 403:
            message = "Resource not accessible by integration"
        if status == 429:
            message = "API rate limit exceeded for user ID 1."
        return github_error(status, message)

    def collection(self, name: str) -> str:
        name = self.aliases.get(name, name)
        if name.count("/") != 1:
            raise ValueError(f"GitHub collections are repositories, 'owner/repo'; not {name!r}")
        return name

    def routes(self):
        user = {"login": "octocat", "id": 1, "type": "User", "name": "The Octocat"}
        return [
            _route("GET", "/user", lambda r: Answer(200, user)),
            _route("GET", "/repos/{owner}/{repo}/issues", lambda r, owner, repo: self.list(r, f"{owner}/{repo}")),
            _route("GET", "/repositories/{repo_id}/issues", lambda r, repo_id: self.list(r, self._by_id(repo_id))),
            _route("POST", "/repos/{owner}/{repo}/issues", lambda r, owner, repo: self.create(r, f"{owner}/{repo}")),
            _route("GET", "/repos/{owner}/{repo}/issues/{number}",
                   lambda r, owner, repo, number: Answer(200, self.render(f"{owner}/{repo}",
                                                                          self._find(f"{owner}/{repo}", number)))),
            _route("PATCH", "/repos/{owner}/{repo}/issues/{number}",
                   lambda r, owner, repo, number: self.update(r, f"{owner}/{repo}", number)),
        ]

    def new_id(self, collection: str) -> str:
        return str(len(self.store.collections[collection]) + 1)

    def repo_id(self, repo: str) -> int:
        return 1_000_000 + list(self.store.collections).index(repo)

    def _by_id(self, repo_id: str) -> str:
        repos = list(self.store.collections)
        index = int(repo_id) - 1_000_000 if repo_id.isdigit() else -1
        if not 0 <= index < len(repos):
            raise Reject(self.error(404, "Not Found"))
        return repos[index]

    def sample(self, collection: str, k: int, given: dict) -> dict:
        return {"title": f"Issue {k}", "body": f"Something to look at ({k}).", "state": "open"}

    def render(self, collection: str, item: Item) -> dict:
        api = f"{self.base_url}/repos/{collection}"
        fields = {"state": "open", "body": None, "labels": [], **item.fields}
        closed = fields["state"] == "closed"
        return {"id": 2_000_000_000 + item.seq, "node_id": "I_kwDO" + base64.b64encode(
                    hashlib.sha1(f"{collection}#{item.id}".encode()).digest()[:9]).decode(),
                "url": f"{api}/issues/{item.id}", "repository_url": api,
                "html_url": f"https://github.com/{collection}/issues/{item.id}", "number": int(item.id),
                "state": fields["state"], "state_reason": "completed" if closed else None,
                "title": fields.get("title"), "body": fields["body"],
                "user": {"login": "octocat", "id": 1, "type": "User"},
                "labels": [{"name": name} for name in fields["labels"]], "assignee": None, "assignees": [],
                "locked": False, "comments": 0, "created_at": github_time(item.created),
                "updated_at": github_time(item.updated), "closed_at": github_time(item.updated) if closed else None,
                "author_association": "OWNER"}

    def _repo(self, repo: str) -> str:
        if repo not in self.store.collections:
            raise Reject(self.error(404, "Not Found"))
        return repo

    def _find(self, repo: str, number: str) -> Item:
        item = self.store.find(self._repo(repo), number)
        if item is None:
            raise Reject(self.error(404, "Not Found"))
        if item.deleted:
            raise Reject(github_error(410, "This issue was deleted"))
        return item

    def _fields(self, request: Received, creating: bool) -> dict:
        try:
            body = json.loads(request.body or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise Reject(github_error(400, "Problems parsing JSON"))
        if creating and not body.get("title"):
            raise Reject(github_error(422, 'Invalid request.\n\n"title" wasn\'t supplied.'))
        if body.get("state", "open") not in ("open", "closed"):
            raise Reject(github_error(422, "Validation Failed",
                                      errors=[{"resource": "Issue", "field": "state", "code": "invalid"}]))
        return {k: v for k, v in body.items() if k in ("title", "body", "state", "labels")}

    def create(self, request: Received, repo: str) -> Answer:
        item = self._insert(self._repo(repo), self._fields(request, True))
        return Answer(201, self.render(repo, item))

    def update(self, request: Received, repo: str, number: str) -> Answer:
        item = self._find(repo, number)
        self._modify(repo, item, self.merge(repo, item.fields, self._fields(request, False)))
        return Answer(200, self.render(repo, item))

    def list(self, request: Received, repo: str) -> Answer:
        params = query_params(request)
        state = params.get("state", "open")
        items = [it for it in self.store.items(self._repo(repo))
                 if state == "all" or it.fields.get("state", "open") == state]
        if "since" in params:
            try:
                since = parse_iso(params["since"]) // 1000 * 1000
            except ValueError:
                invalid = [{"resource": "Issue", "field": "since", "code": "invalid"}]
                raise Reject(github_error(422, "Validation Failed", errors=invalid)) from None
            items = [it for it in items if it.updated // 1000 * 1000 >= since]
        timestamp = (lambda it: (it.updated // 1000, it.seq)) if params.get("sort") == "updated" else \
            (lambda it: (it.created // 1000, it.seq))
        items.sort(key=timestamp, reverse=params.get("direction", "desc") != "asc")
        per_page = min(_whole(params.get("per_page"), 30), 100) or 30
        page = max(_whole(params.get("page"), 1), 1)
        last = max((len(items) + per_page - 1) // per_page, 1)
        links = {"prev": page - 1, "next": page + 1, "last": last, "first": 1}
        shown = [rel for rel in (("prev", "first") if page > 1 else ()) + (("next", "last") if page < last else ())]
        url = f"{self.base_url}/repositories/{self.repo_id(repo)}/issues"
        header = ", ".join(f'<{url}?{urlencode({**params, "page": links[rel]})}>; rel="{rel}"'
                           for rel in sorted(shown, key=["prev", "next", "last", "first"].index))
        body = [self.render(repo, it) for it in items[(page - 1) * per_page:page * per_page]]
        return Answer(200, body, [("link", header)] if header else [])


PROVIDERS = {"stripe": StripeFake, "salesforce": SalesforceFake, "hubspot": HubSpotFake, "github": GitHubFake}


async def start_fake_provider(name: str) -> FakeProvider:
    """Start the emulator of `name` ("stripe", "salesforce", "hubspot" or "github") on 127.0.0.1."""
    fake = PROVIDERS[name]()
    await fake.start()
    return fake


# ---------------------------------------------------------------------------------------------
# Serving them as a program: the README's examples without provider accounts
# ---------------------------------------------------------------------------------------------

# provider -> (the shell variables of its URL and its key, the collection seeded, as the README uses them)
DEMO = {
    "stripe": ("STRIPE_URL", "STRIPE_KEY", "customers"),
    "salesforce": ("SALESFORCE_URL", "SALESFORCE_TOKEN", "Contact"),
    "hubspot": ("HUBSPOT_URL", "HUBSPOT_TOKEN", "contacts"),
    "github": ("GITHUB_URL", "GITHUB_TOKEN", "issue"),
}


async def serve_demo(ready) -> None:
    """Serves every fake provider with 3 records each until SIGINT or SIGTERM; calls
    `ready(lines)` with the shell assignments of their URLs and keys once they listen."""
    fakes = []

    async def start() -> list[str]:
        lines = []
        for name, (url_variable, key_variable, collection) in DEMO.items():
            fake = await start_fake_provider(name)
            fakes.append(fake)
            fake.seed(collection, n=3)
            lines += [f"export {url_variable}={shlex.quote(fake.base_url)}",
                      f"export {key_variable}={shlex.quote(fake.token)}"]
        return lines

    await serve_until_stopped(start, ready)
    for fake in fakes:
        await fake.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Serve fake Stripe, Salesforce, HubSpot and GitHub APIs on loopback ports, 3 records each; "
                    "print the shell variables of their URLs and keys.")
    parser.add_argument("--background", action="store_true",
                        help="serve from a background process and return; also print FAKE_PROVIDERS_PID")
    args = parser.parse_args(argv)
    if not args.background:
        asyncio.run(serve_demo(lambda lines: print(*lines, sep="\n", flush=True)))
        return 0
    return serve_in_background(serve_demo, "FAKE_PROVIDERS_PID")


if __name__ == "__main__":
    sys.exit(main())
