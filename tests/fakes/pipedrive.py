"""The Pipedrive API v2 emulator: deals and persons.

From developers.pipedrive.com ("Pipedrive API v2 overview", Deals and Persons API v2, as the
pipedrive/client-php docs/versions/v2 pages restate them); see PipedriveFake.
"""

from __future__ import annotations

from emulators import Received
from fakes.core import (
    Answer, FakeProvider, Item, Reject, after_change, change_cursor, iso, json_body, parse_iso, query_params,
    random_token, route, whole,
)


def pipedrive_error(status: int, message: str) -> Answer:
    return Answer(status, {"success": False, "error": message, "code": status})


class PipedriveFake(FakeProvider):
    """Pipedrive's API v2 under /api/v2: "deals", "persons" and "organizations".

    Auth: the API token as the `api_token` query parameter (or `x-api-token`). Times RFC 3339 in
    whole seconds. GET /deals and /persons: `updated_since` (update_time at or after), `sort_by`
    id (default) | update_time | add_time, `sort_direction`, `limit` (default 100, max 500),
    `cursor`; answers `{success, data: [...], additional_data: {next_cursor}}` (null at the end).
    Deals also take `status`: without it, all deals not deleted; `deleted` lists the deals
    deleted in the last 30 days (a deleted deal keeps its id, with `is_deleted: true`).
    POST /deals, PATCH /deals/{id} answer `{success, data: deal}`; DELETE /deals/{id} answers
    `{success, data: {id}}`; the same for persons and organizations (whose deletion leaves no trace
    in the lists).
    """

    name = "pipedrive"
    aliases = {"deal": "deals", "deals": "deals", "person": "persons", "persons": "persons",
               "organization": "organizations", "organizations": "organizations"}

    def make_token(self) -> str:
        return random_token(40, "0123456789abcdef")

    def credential_properties(self, token: str) -> dict:
        return {"kind": "pipedrive_api_token", "api_token": token}

    def authorized(self, request: Received) -> bool:
        return query_params(request).get("api_token") == self.token or request.header("x-api-token") == self.token

    def unauthorized(self) -> Answer:
        return pipedrive_error(401, "unauthorized access")

    def error(self, status: int, message: str) -> Answer:
        if status == 429:
            return pipedrive_error(429, "Request over limit")
        return pipedrive_error(status, message)

    def routes(self):
        return [
            route("GET", "/v1/users/me", lambda r: Answer(200, {"success": True, "data": {"id": 1, "name": "Admin"}})),
            route("GET", "/api/v2/{kind}", lambda r, kind: self.list(r, self._kind(kind))),
            route("POST", "/api/v2/{kind}", lambda r, kind: self.create(r, self._kind(kind))),
            route("GET", "/api/v2/{kind}/{id}", lambda r, kind, id: self.show(self._kind(kind), id)),
            route("PATCH", "/api/v2/{kind}/{id}", lambda r, kind, id: self.update(r, self._kind(kind), id)),
            route("DELETE", "/api/v2/{kind}/{id}", lambda r, kind, id: self.destroy(self._kind(kind), id)),
        ]

    def _kind(self, kind: str) -> str:
        if kind not in ("deals", "persons", "organizations"):
            raise Reject(pipedrive_error(404, "Unknown method ."))
        return kind

    def new_id(self, collection: str) -> str:
        return str(next(self._serial))

    def sample(self, collection: str, k: int, given: dict) -> dict:
        if collection == "deals":
            return {"title": f"Deal {k}", "value": 1000 * k, "currency": "EUR", "status": "open"}
        if collection == "organizations":
            return {"name": f"Organization {k}", "address": None}
        return {"name": f"Person {k}", "emails": [{"value": f"person{k}@example.com", "primary": True}]}

    def render(self, collection: str, item: Item) -> dict:
        out = {"id": int(item.id), **item.fields, "add_time": iso(item.created, 0), "update_time": iso(item.updated, 0)}
        if collection == "deals":
            out["is_deleted"] = item.deleted is not None
        return out

    def list(self, request: Received, collection: str) -> Answer:
        params = query_params(request)
        items = self.store.items(collection, deleted=True)
        statuses = set(params.get("status", "").split(",")) - {""} if collection == "deals" else set()
        if "deleted" in statuses:
            items = [it for it in items if it.deleted is not None]
            statuses.discard("deleted")
        else:
            items = [it for it in items if it.deleted is None]
        if statuses:
            items = [it for it in items if it.fields.get("status") in statuses]
        if "updated_since" in params:
            try:
                since = parse_iso(params["updated_since"]) // 1000
            except ValueError:
                raise Reject(pipedrive_error(400, "Invalid updated_since: not RFC3339")) from None
            items = [it for it in items if it.updated // 1000 >= since]
        sort_by = params.get("sort_by", "id")
        if sort_by not in ("id", "update_time", "add_time"):
            raise Reject(pipedrive_error(400, f"Invalid sort_by: {sort_by}"))
        if sort_by == "update_time":  # the cursor then holds the last change seen (see change_cursor)
            items = after_change(items, params["cursor"], lambda m: pipedrive_error(400, m)) \
                if params.get("cursor") else sorted(items, key=lambda it: (it.updated, it.seq))
        else:
            key = (lambda it: int(it.id)) if sort_by == "id" else (lambda it: (it.created, it.seq))
            items = sorted(items, key=key)
            start = params.get("cursor")
            if start and not start.isdigit():
                raise Reject(pipedrive_error(400, f"Invalid cursor: {start}"))
            if start:
                items = [it for it in items if int(it.id) >= int(start)]
        if params.get("sort_direction", "asc") == "desc":
            items.reverse()
        limit = whole(params.get("limit"), 100, 500)
        page, rest = items[:limit], items[limit:]
        next_cursor = None
        if rest:
            next_cursor = change_cursor(page[-1]) if sort_by == "update_time" else rest[0].id
        return Answer(200, {"success": True, "data": [self.render(collection, it) for it in page],
                            "additional_data": {"next_cursor": next_cursor}})

    def _find(self, collection: str, id: str) -> Item:
        item = self.store.find(collection, id)
        if item is None or item.deleted:
            raise Reject(pipedrive_error(404, f"{collection[:-1].capitalize()} not found"))
        return item

    def _fields(self, request: Received, collection: str, creating: bool) -> dict:
        body = json_body(request, lambda m: pipedrive_error(400, m))
        required = "title" if collection == "deals" else "name"
        if creating and not body.get(required):
            raise Reject(pipedrive_error(400, f"Validation failed: {required}: Required"))
        return {k: v for k, v in body.items() if k not in ("id", "add_time", "update_time")}

    def create(self, request: Received, collection: str) -> Answer:
        item = self._insert(collection, {"status": "open", **self._fields(request, collection, True)}
                            if collection == "deals" else self._fields(request, collection, True))
        return Answer(200, {"success": True, "data": self.render(collection, item)})

    def show(self, collection: str, id: str) -> Answer:
        return Answer(200, {"success": True, "data": self.render(collection, self._find(collection, id))})

    def update(self, request: Received, collection: str, id: str) -> Answer:
        item = self._find(collection, id)
        self._modify(collection, item, {**item.fields, **self._fields(request, collection, False)})
        return Answer(200, {"success": True, "data": self.render(collection, item)})

    def destroy(self, collection: str, id: str) -> Answer:
        item = self._find(collection, id)
        self._remove(collection, item)
        return Answer(200, {"success": True, "data": {"id": int(id)}})

