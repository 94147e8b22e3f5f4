"""The Stripe emulator: the calls Headwater makes, answered as Stripe answers them (see StripeFake).

tests/test_fake_providers.py shows each call."""

from __future__ import annotations

import base64
import itertools
import re
from collections.abc import Callable
from urllib.parse import parse_qsl

from emulators import Received
from fakes.core import EMAIL, Answer, FakeProvider, Item, Reject, random_token, route




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
                  [("request-id", f"req_{random_token(14)}")])


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
        return "sk_test_" + random_token(24)

    def new_id(self, collection: str) -> str:
        return f"{self.prefixes[collection]}_{random_token(14 if collection == 'customers' else 24)}"

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
        routes = [route("GET", "/v1/balance", lambda r: Answer(200, balance))]
        for collection in ("customers", "subscriptions", "invoices", "events"):
            base = f"/v1/{collection}"
            routes += [
                route("GET", base, lambda r, c=collection: self.list(r, c)),
                route("GET", base + "/{id}", lambda r, id, c=collection: self.retrieve(c, id)),
            ]
            if collection in self.parameters:
                routes += [
                    route("POST", base, lambda r, c=collection: self.idempotent(r, lambda: self.create(r, c))),
                    route("POST", base + "/{id}",
                           lambda r, id, c=collection: self.idempotent(r, lambda: self.update(r, c, id))),
                    route("DELETE", base + "/{id}",
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
                    "items": [{"id": f"si_{random_token(14)}", "price": "price_basic", "quantity": 1}]}
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
        if "email" in params and params["email"] and not EMAIL.match(params["email"]):
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
            out.append({"id": entry.get("id") or f"si_{random_token(14)}", "price": entry["price"],
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
