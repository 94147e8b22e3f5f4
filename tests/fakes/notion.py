"""The Notion emulator: pages, found through the search API, and page writes.

From Notion's OpenAPI description as makenotion/notion-mcp-server publishes it
(scripts/notion-openapi.json, kept trimmed as tests/upstream-specs/notion-search-pages.json) and
developers.notion.com ("Search", "Pagination", "Trash a page"); see NotionFake.
"""

from __future__ import annotations

import uuid

from emulators import Received
from fakes.core import (
    Answer, FakeProvider, Item, Reject, after_change, change_cursor, iso, json_body, random_token, route,
)


def notion_error(status: int, code: str, message: str) -> Answer:
    return Answer(status, {"object": "error", "status": status, "code": code, "message": message})


class NotionFake(FakeProvider):
    """Notion's API under /v1: "pages" (of a workspace the integration was shared).

    Auth: the integration token as Bearer, and a `Notion-Version` header (refused without one).
    Times are ISO-8601 to the minute, as Notion rounds `last_edited_time` ("2024-01-15T10:30:00.000Z").
    POST /v1/search: `filter: {property: object, value: page}`, `sort: {timestamp: last_edited_time,
    direction: ascending|descending}` (default: most recently edited first), `page_size` (max 100),
    `start_cursor`; answers `{object: list, results, next_cursor, has_more}`. Trashed pages are not
    found. POST /v1/pages (a `parent` and `properties`), PATCH /v1/pages/{id} (`properties`,
    `archived` / `in_trash`: true moves it to the trash) answer the page.
    """

    name = "notion"
    aliases = {"page": "pages", "pages": "pages"}
    bot = "2f1b3c4d-0000-4000-8000-000000000001"  # the integration's bot user

    def make_token(self) -> str:
        return "secret_" + random_token(43)

    def credential_properties(self, token: str) -> dict:
        return {"kind": "notion_integration_token", "token": token, "base_url": f"{self.base_url}/v1"}

    def answer(self, request: Received) -> Answer:
        if self.authorized(request) and not request.header("notion-version"):
            return notion_error(400, "missing_version", "Notion-Version header failed validation: "
                                                        "Notion-Version header should be defined")
        return super().answer(request)

    def unauthorized(self) -> Answer:
        return notion_error(401, "unauthorized", "API token is invalid.")

    def error(self, status: int, message: str) -> Answer:
        if status == 429:
            return notion_error(429, "rate_limited", "You have been rate limited. Please try again in a few minutes.")
        if status == 404:
            return notion_error(404, "object_not_found", "Could not find page.")
        return notion_error(status, "internal_server_error" if status >= 500 else "validation_error", message)

    def routes(self):
        return [
            route("GET", "/v1/users/me", lambda r: Answer(200, {"object": "user", "id": self.bot, "type": "bot"})),
            route("POST", "/v1/search", self.search),
            route("POST", "/v1/pages", self.create),
            route("GET", "/v1/pages/{id}", lambda r, id: Answer(200, self.render("pages", self._find(id)))),
            route("PATCH", "/v1/pages/{id}", self.update),
        ]

    def new_id(self, collection: str) -> str:
        return str(uuid.uuid4())

    def sample(self, collection: str, k: int, given: dict) -> dict:
        return {"parent": {"type": "workspace", "workspace": True},
                "properties": {"title": {"id": "title", "type": "title",
                                         "title": [{"type": "text", "plain_text": f"Page {k}"}]}}}

    def render(self, collection: str, item: Item) -> dict:
        minute = lambda ms: iso(ms // 60_000 * 60_000)  # noqa: E731
        return {"object": "page", "id": item.id, "created_time": minute(item.created),
                "last_edited_time": minute(item.updated), "archived": bool(item.deleted),
                "in_trash": bool(item.deleted), "url": f"https://www.notion.so/{item.id.replace('-', '')}",
                **item.fields}

    def search(self, request: Received) -> Answer:
        body = json_body(request, lambda m: notion_error(400, "validation_error", m))
        flt = body.get("filter")
        if flt is not None and (flt.get("property") != "object" or flt.get("value") not in ("page", "database")):
            raise Reject(notion_error(400, "validation_error", "body.filter.value should be `page` or `database`"))
        size = body.get("page_size", 100)
        if not isinstance(size, int) or not 1 <= size <= 100:
            raise Reject(notion_error(400, "validation_error", "body.page_size should be ≤ `100`"))
        sort = body.get("sort") or {"timestamp": "last_edited_time", "direction": "descending"}
        if sort.get("timestamp") != "last_edited_time" or sort.get("direction") not in ("ascending", "descending"):
            raise Reject(notion_error(400, "validation_error", "body.sort.timestamp should be `last_edited_time`"))
        items = [] if flt and flt["value"] == "database" else self.store.items("pages")
        if sort["direction"] != "ascending":
            raise Reject(notion_error(400, "validation_error", "this emulator pages ascending searches only"))
        invalid = lambda m: notion_error(400, "validation_error", "body.start_cursor: " + m)  # noqa: E731
        items = after_change(items, body["start_cursor"], invalid) if body.get("start_cursor") else \
            sorted(items, key=lambda it: (it.updated, it.seq))
        page = items[:size]
        more = len(items) > size
        return Answer(200, {"object": "list", "results": [self.render("pages", it) for it in page],
                            "next_cursor": change_cursor(page[-1]) if more else None, "has_more": more,
                            "type": "page_or_database", "page_or_database": {}})

    def _find(self, id: str) -> Item:
        item = self.store.find("pages", id)
        if item is None or item.deleted:
            raise Reject(self.error(404, ""))
        return item

    def create(self, request: Received) -> Answer:
        body = json_body(request, lambda m: notion_error(400, "validation_error", m))
        if not isinstance(body.get("parent"), dict):
            raise Reject(notion_error(400, "validation_error",
                                      "body.parent should be defined, instead was `undefined`."))
        item = self._insert("pages", {"parent": body["parent"], "properties": body.get("properties") or {}})
        return Answer(200, self.render("pages", item))

    def update(self, request: Received, id: str) -> Answer:
        item = self._find(id)
        body = json_body(request, lambda m: notion_error(400, "validation_error", m))
        if body.get("archived") or body.get("in_trash"):
            self._remove("pages", item)
        else:
            properties = {**item.fields.get("properties", {}), **(body.get("properties") or {})}
            self._modify("pages", item, {**item.fields, "properties": properties})
        return Answer(200, self.render("pages", item))
