"""The Airtable Web API emulator: the records of one table of one base.

From airtable.com/developers/web/api ("List records", "Create records", "Update record",
"Delete record", "Pagination"); see AirtableFake.
"""

from __future__ import annotations

from emulators import Received
from fakes.core import (
    Answer, FakeProvider, Item, Reject, cursor_page, iso, json_body, query_params, random_token, route, whole,
)


def airtable_error(status: int, type: str, message: str | None = None) -> Answer:
    return Answer(status, {"error": {"type": type, "message": message} if message else type})


class AirtableFake(FakeProvider):
    """Airtable under /v0: collection "records" is table `fake.table` of base `fake.base`.

    Auth: a personal access token as Bearer. A record is `{id: "rec…", createdTime, fields}`; it
    carries no change time (a table needs a "last modified time" field for that). GET
    /v0/{base}/{table}: `pageSize` (max 100), `offset` (the previous answer's `offset`, absent on
    the last page), in a stable order. POST /v0/{base}/{table} `{fields}` answers the record (a
    `records` list creates several); PATCH /v0/{base}/{table}/{id} `{fields}` merges them; DELETE
    answers `{id, deleted: true}`.
    """

    name = "airtable"
    aliases = {"record": "records", "records": "records"}
    base = "appA1b2C3d4E5f6G7"
    table = "Tasks"

    def make_token(self) -> str:
        return "pat" + random_token(14) + "." + random_token(64, "0123456789abcdef")

    def credential_properties(self, token: str) -> dict:
        return {"kind": "airtable_pat", "token": token, "base_url": f"{self.base_url}/v0"}

    def unauthorized(self) -> Answer:
        return airtable_error(401, "AUTHENTICATION_REQUIRED", "Authentication required")

    def error(self, status: int, message: str) -> Answer:
        if status == 429:
            return airtable_error(429, "RATE_LIMIT_REACHED", "Rate limit exceeded. Please try again later")
        if status == 404:
            return airtable_error(404, "NOT_FOUND")
        return airtable_error(status, "SERVER_ERROR" if status >= 500 else "INVALID_REQUEST_UNKNOWN", message)

    def routes(self):
        return [
            route("GET", "/v0/meta/whoami", lambda r: Answer(200, {"id": "usrA1b2C3d4E5f6G7"})),
            route("GET", "/v0/{base}/{table}", lambda r, base, table: self.list(r, self._table(base, table))),
            route("POST", "/v0/{base}/{table}", lambda r, base, table: self.create(r, self._table(base, table))),
            route("GET", "/v0/{base}/{table}/{id}",
                  lambda r, base, table, id: Answer(200, self.render(self._table(base, table), self._find(id)))),
            route("PATCH", "/v0/{base}/{table}/{id}",
                  lambda r, base, table, id: self.update(r, self._table(base, table), id)),
            route("DELETE", "/v0/{base}/{table}/{id}",
                  lambda r, base, table, id: self.destroy(self._table(base, table), id)),
        ]

    def _table(self, base: str, table: str) -> str:
        if base != self.base:
            raise Reject(airtable_error(404, "NOT_FOUND"))
        if table != self.table:
            raise Reject(airtable_error(404, "TABLE_NOT_FOUND", f'Could not find table {table} in application {base}'))
        return "records"

    def new_id(self, collection: str) -> str:
        return "rec" + random_token(14)

    def sample(self, collection: str, k: int, given: dict) -> dict:
        return {"fields": {"Name": f"Task {k}", "Status": "Todo"}}

    def fields_of(self, obj: dict) -> dict:
        return {"fields": obj.get("fields", {})}

    def merge(self, collection: str, old: dict, changes: dict) -> dict:
        return {"fields": {**old.get("fields", {}), **changes.get("fields", {})}}

    def render(self, collection: str, item: Item) -> dict:
        return {"id": item.id, "createdTime": iso(item.created, 3), "fields": dict(item.fields.get("fields", {}))}

    def list(self, request: Received, collection: str) -> Answer:
        params = query_params(request)
        size = whole(params.get("pageSize"), 100, 100)
        invalid = lambda m: airtable_error(422, "LIST_RECORDS_ITERATOR_NOT_AVAILABLE")  # noqa: E731
        page, offset = cursor_page(self.store.items(collection), params.get("offset"), size, invalid)
        body = {"records": [self.render(collection, it) for it in page]}
        if offset:
            body["offset"] = offset
        return Answer(200, body)

    def _find(self, id: str) -> Item:
        item = self.store.find("records", id)
        if item is None or item.deleted:
            raise Reject(airtable_error(404, "NOT_FOUND"))
        return item

    def _fields(self, request: Received) -> dict:
        body = json_body(request, lambda m: airtable_error(422, "INVALID_REQUEST_UNKNOWN", m))
        if not isinstance(body.get("fields"), dict):
            raise Reject(airtable_error(422, "INVALID_REQUEST_MISSING_FIELDS",
                                        'Could not find field "fields" in the request body'))
        return body["fields"]

    def create(self, request: Received, collection: str) -> Answer:
        item = self._insert(collection, {"fields": self._fields(request)})
        return Answer(200, self.render(collection, item))

    def update(self, request: Received, collection: str, id: str) -> Answer:
        item = self._find(id)
        self._modify(collection, item, self.merge(collection, item.fields, {"fields": self._fields(request)}))
        return Answer(200, self.render(collection, item))

    def destroy(self, collection: str, id: str) -> Answer:
        self._remove(collection, self._find(id))
        return Answer(200, {"id": id, "deleted": True})
