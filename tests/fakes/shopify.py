"""The Shopify Admin REST emulator: products and customers of one shop, and its events.

From shopify.dev ("REST Admin API": Product, Customer, Event; "Paginating results with REST");
see ShopifyFake.
"""

from __future__ import annotations

import base64
import json

from emulators import Received
from fakes.core import (
    Answer, FakeProvider, Item, Reject, SingularRecords, changed_since, json_body, link_header, parse_iso,
    query_params, random_token, route, utc, whole,
)

VERSION = "2025-01"


def shopify_time(ms: int) -> str:
    """Shopify's times: whole seconds with the shop's offset ("2024-01-15T10:30:00-05:00"); this shop is in UTC."""
    return utc(ms).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def shopify_error(status: int, message) -> Answer:
    return Answer(status, {"errors": message})


class ShopifyFake(SingularRecords, FakeProvider):
    """Shopify's REST Admin API of one shop, under /admin/api/2025-01: "products", "customers", "orders".

    Auth: the access token in `X-Shopify-Access-Token`. Times in whole seconds.
    GET /products.json and /customers.json: `limit` (default 50, max 250), `updated_at_min`
    (ISO-8601: updated at or after), ordered by id; cursor paging in the `Link` header
    (`<...?limit=..&page_info=...>; rel="next"`): a request with `page_info` may carry only
    `limit` (and `fields`), anything else is refused with 400, as Shopify does.
    GET /orders.json lists only open orders unless `status=any`.
    GET /events.json: `filter` (the subject types, "Product" or "Order"), `verb` ("destroy"),
    `created_at_min`, `limit`, newest first with the same Link paging: what a deleted product or
    order leaves behind (its id as `subject_id`). Customers leave no events (Shopify's events do
    not cover them).
    POST /products.json and /customers.json (`{"product": {...}}` -> 201 `{"product": {...}}`),
    PUT /products/{id}.json, DELETE /products/{id}.json (200 `{}`); the same for customers.
    """

    name = "shopify"
    aliases = {"product": "products", "products": "products", "customer": "customers", "customers": "customers",
               "order": "orders", "orders": "orders"}
    singular = {"products": "product", "customers": "customer", "orders": "order"}
    subject = {"products": "Product", "customers": "Customer", "orders": "Order"}

    def __init__(self):
        super().__init__()
        self.events: list[dict] = []

    def make_token(self) -> str:
        return "shpat_" + random_token(32, "0123456789abcdef")

    def credential_properties(self, token: str) -> dict:
        return {"kind": "shopify_access_token", "shop": "acme", "access_token": token,
                "base_url": f"{self.base_url}/admin/api/{VERSION}"}

    def authorized(self, request: Received) -> bool:
        return request.header("x-shopify-access-token") == self.token

    def unauthorized(self) -> Answer:
        return shopify_error(401, "[API] Invalid API key or access token (unrecognized login or wrong password)")

    def error(self, status: int, message: str) -> Answer:
        if status == 404:
            return shopify_error(404, "Not Found")
        if status == 429:
            return Answer(429, {"errors": "Exceeded 2 calls per second for api client. Reduce request rates to "
                                          "resume uninterrupted service."}, [("retry-after", "1.0")])
        return shopify_error(status, message)

    def routes(self):
        base = f"/admin/api/{VERSION}"
        return [
            route("GET", f"{base}/shop.json", lambda r: Answer(200, {"shop": {"id": 1, "name": "Acme"}})),
            route("GET", f"{base}/events.json", self.list_events),
            route("GET", f"{base}/{{kind}}.json", lambda r, kind: self.list(r, self._kind(kind))),
            route("POST", f"{base}/{{kind}}.json", lambda r, kind: self.create(r, self._kind(kind))),
            route("GET", f"{base}/{{kind}}/{{id}}.json", lambda r, kind, id: self.show(self._kind(kind), id)),
            route("PUT", f"{base}/{{kind}}/{{id}}.json", lambda r, kind, id: self.update(r, self._kind(kind), id)),
            route("DELETE", f"{base}/{{kind}}/{{id}}.json", lambda r, kind, id: self.destroy(self._kind(kind), id)),
        ]

    def _kind(self, kind: str) -> str:
        if kind not in self.singular:
            raise Reject(self.error(404, ""))
        return kind

    def new_id(self, collection: str) -> str:
        return str(7_000_000_000 + next(self._serial))

    def sample(self, collection: str, k: int, given: dict) -> dict:
        if collection == "products":
            return {"title": f"Snowboard {k}", "vendor": "Acme", "product_type": "Snowboard", "status": "active"}
        if collection == "orders":
            return {"name": f"#{1000 + k}", "email": f"buyer{k}@example.com", "financial_status": "paid",
                    "line_items": [{"title": "Snowboard", "quantity": 1, "price": "199.00"}], "closed_at": None}
        return {"first_name": "Customer", "last_name": str(k), "email": f"customer{k}@example.com"}

    def render(self, collection: str, item: Item) -> dict:
        return {"id": int(item.id), **item.fields, "created_at": shopify_time(item.created),
                "updated_at": shopify_time(item.updated),
                "admin_graphql_api_id": f"gid://shopify/{self.subject[collection]}/{item.id}"}

    def on_change(self, kind: str, collection: str, item: Item, previous: dict | None) -> None:
        verb = {"created": "create", "updated": "update", "deleted": "destroy"}[kind]
        if collection != "customers":  # Shopify records product and order events; customers have none
            self.events.append({"id": 9_000_000 + len(self.events) + 1, "subject_id": int(item.id),
                                "subject_type": self.subject[collection], "verb": verb, "created_at": item.updated,
                                "message": f"{self.subject[collection]} {item.id} was {kind}.",
                                "path": f"/admin/{collection}/{item.id}"})

    # -- paging: the Link header's page_info carries the filters of the first request ----------

    def _position(self, request: Received, filters: dict) -> tuple[dict, int, int]:
        """The filters, start and page size a request names: its own, or its page_info's."""
        params = query_params(request)
        limit = whole(params.get("limit"), 50, 250)
        if "page_info" in params:
            extra = set(params) - {"page_info", "limit", "fields"}
            if extra:
                raise Reject(shopify_error(400, {"page_info": [f"cannot be used with {sorted(extra)[0]}"]}))
            try:
                state = json.loads(base64.urlsafe_b64decode(params["page_info"] + "==="))
            except ValueError:
                raise Reject(shopify_error(400, {"page_info": ["Invalid value."]})) from None
            start, filters = state["start"], state["filters"]
        else:
            start = 0
        return filters, start, limit

    def _page(self, path: str, rows: list, start: int, limit: int, filters: dict) -> tuple[list, list]:
        page = rows[start:start + limit]
        more = start + limit < len(rows)
        info = base64.urlsafe_b64encode(json.dumps({"start": start + limit, "filters": filters}).encode()).decode()
        url = f"{self.base_url}/admin/api/{VERSION}/{path}"
        return page, link_header(url, {"limit": limit}, {"page_info": info.rstrip("=")} if more else None)

    def _since(self, value: str | None, name: str) -> int | None:
        if value is None:
            return None
        try:
            return parse_iso(value)
        except ValueError:
            raise Reject(shopify_error(400, {name: ["is invalid"]})) from None

    def list(self, request: Received, collection: str) -> Answer:
        params = query_params(request)
        filters, start, limit = self._position(request, {
            k: params[k] for k in ("updated_at_min", "status") if k in params})
        since = self._since(filters.get("updated_at_min"), "updated_at_min")
        items = changed_since(self.store.items(collection), since, 1000)
        if collection == "orders" and filters.get("status", "open") != "any":
            wanted = filters.get("status", "open")
            items = [it for it in items if (it.fields.get("closed_at") is None) == (wanted == "open")]
        items.sort(key=lambda it: int(it.id))
        page, headers = self._page(f"{collection}.json", items, start, limit, filters)
        return Answer(200, {collection: [self.render(collection, it) for it in page]}, headers)

    def list_events(self, request: Received) -> Answer:
        params = query_params(request)
        filters, start, limit = self._position(request, {
            k: params[k] for k in ("filter", "verb", "created_at_min") if k in params})
        since = self._since(filters.get("created_at_min"), "created_at_min")
        events = [e for e in reversed(self.events)
                  if (not filters.get("filter") or e["subject_type"] in filters["filter"].split(","))
                  and (not filters.get("verb") or e["verb"] == filters["verb"])
                  and (since is None or e["created_at"] // 1000 >= since // 1000)]
        page, headers = self._page("events.json", events, start, limit, filters)
        return Answer(200, {"events": [{**e, "created_at": shopify_time(e["created_at"])} for e in page]}, headers)

    # -- writes --------------------------------------------------------------------------------

    def _find(self, collection: str, id: str) -> Item:
        item = self.store.find(collection, id)
        if item is None or item.deleted:
            raise Reject(self.error(404, ""))
        return item

    def _fields(self, request: Received, collection: str, creating: bool) -> dict:
        body = json_body(request, lambda m: shopify_error(400, m))
        fields = body.get(self.singular[collection])
        if not isinstance(fields, dict):
            raise Reject(shopify_error(400, {self.singular[collection]: "Required parameter missing or invalid"}))
        if creating and collection == "products" and not fields.get("title"):
            raise Reject(shopify_error(422, {"title": ["can't be blank"]}))
        if creating and collection == "orders" and not fields.get("line_items"):
            raise Reject(shopify_error(422, {"line_items": ["must have at least one line item"]}))
        return {k: v for k, v in fields.items() if k not in ("id", "created_at", "updated_at")}

    def destroy(self, collection: str, id: str) -> Answer:
        self._remove(collection, self._find(collection, id))
        return Answer(200, {})
