"""The Zendesk Support emulator: tickets and users, their incremental exports, and their writes.

From developer.zendesk.com ("Incremental exports", "Tickets", "Users", "Security and
authentication"); see ZendeskFake.
"""

from __future__ import annotations

import base64

from emulators import Received
from fakes.core import (
    Answer, FakeProvider, Item, Reject, SingularRecords, after_change, change_cursor, changed_since, iso,
    json_body, query_params, random_token, route,
)


def zendesk_error(status: int, message: str) -> Answer:
    if status == 401:
        return Answer(401, {"error": "Couldn't authenticate you"})
    if status == 404:
        return Answer(404, {"error": "RecordNotFound", "description": "Not found"})
    if status == 429:
        return Answer(429, {"error": "APIRateLimitExceeded", "description": "Rate limit exceeded"})
    return Answer(status, {"error": "RecordInvalid" if status == 422 else "InvalidEndpoint", "description": message})


class ZendeskFake(SingularRecords, FakeProvider):
    """Zendesk Support on `{subdomain}.zendesk.com/api/v2`: collections "tickets" and "users".

    Auth: an API token as Basic `{email}/token:{token}`. Times are whole seconds ("…Z").
    GET /incremental/{tickets,users}/cursor.json: the cursor-based incremental export, from
    `start_time` (epoch seconds: what changed at or after it) or `cursor`; at most `per_page`
    (default 1000) items, ordered by change time, with `after_url` / `after_cursor` and
    `end_of_stream` (true once the page reaches the present; `after_url` is still given, to poll
    later). Deleted tickets stay in the export with `status: "deleted"`; deleted users with
    `active: false`. POST /tickets.json, PUT /tickets/{id}.json (`{"ticket": {...}}`, answered
    `{"ticket": {...}}`), DELETE /tickets/{id}.json (204); the same for users (a user's delete
    answers 200 with the user, now inactive). Organizations have only the time-based export, GET
    /incremental/organizations.json?start_time=: up to 1,000 items changed at or after it, oldest
    first, `next_page` (start_time = the last item's change time, so the items of that second come
    again), `end_time`, `count` and `end_of_stream` (fewer than 1,000 items); a deleted
    organization leaves the export. Writes as for tickets (`{"organization": {...}}`).
    """

    name = "zendesk"
    aliases = {"ticket": "tickets", "tickets": "tickets", "user": "users", "users": "users",
               "organization": "organizations", "organizations": "organizations"}
    email = "agent@example.com"
    singular = {"tickets": "ticket", "users": "user", "organizations": "organization"}

    def make_token(self) -> str:
        return random_token(40)

    def credential_properties(self, token: str) -> dict:
        return {"kind": "zendesk_api_token", "subdomain": "acme", "username": f"{self.email}/token",
                "api_token": token, "base_url": f"{self.base_url}/api/v2"}

    def authorized(self, request: Received) -> bool:
        expected = base64.b64encode(f"{self.email}/token:{self.token}".encode()).decode()
        return request.header("authorization") == f"Basic {expected}"

    def unauthorized(self) -> Answer:
        return zendesk_error(401, "")

    def error(self, status: int, message: str) -> Answer:
        return zendesk_error(status, message)

    def routes(self):
        return [
            route("GET", "/api/v2/users/me.json", lambda r: Answer(200, {"user": {"id": 1, "email": self.email}})),
            route("GET", "/api/v2/incremental/organizations.json", self.time_export),
            route("GET", "/api/v2/incremental/{kind}/cursor.json", lambda r, kind: self.export(r, self._kind(kind))),
            route("POST", "/api/v2/{kind}.json", lambda r, kind: self.create(r, self._kind(kind))),
            route("GET", "/api/v2/{kind}/{id}.json", lambda r, kind, id: self.show(self._kind(kind), id)),
            route("PUT", "/api/v2/{kind}/{id}.json", lambda r, kind, id: self.update(r, self._kind(kind), id)),
            route("DELETE", "/api/v2/{kind}/{id}.json", lambda r, kind, id: self.destroy(self._kind(kind), id)),
        ]

    def _kind(self, kind: str) -> str:
        if kind not in self.singular:
            raise Reject(zendesk_error(404, ""))
        return kind

    def new_id(self, collection: str) -> str:
        return str(next(self._serial) + 1000)

    def sample(self, collection: str, k: int, given: dict) -> dict:
        if collection == "tickets":
            return {"subject": f"Printer on fire ({k})", "description": "It burns.", "status": "open",
                    "priority": "normal"}
        if collection == "organizations":
            return {"name": f"Organization {k}", "domain_names": [f"org{k}.example.com"], "tags": []}
        return {"name": f"Customer {k}", "email": f"customer{k}@example.com", "role": "end-user"}

    def render(self, collection: str, item: Item) -> dict:
        out = {"id": int(item.id), "url": f"{self.base_url}/api/v2/{collection}/{item.id}.json", **item.fields,
               "created_at": iso(item.created, 0), "updated_at": iso(item.updated, 0)}
        if collection == "tickets" and item.deleted:
            out["status"] = "deleted"
        if collection == "users":
            out["active"] = item.deleted is None
        return out

    def _find(self, collection: str, id: str) -> Item:
        item = self.store.find(collection, id)
        if item is None or item.deleted:
            raise Reject(zendesk_error(404, ""))
        return item

    def _fields(self, request: Received, collection: str, creating: bool) -> dict:
        body = json_body(request, lambda m: zendesk_error(400, m))
        fields = body.get(self.singular[collection])
        if not isinstance(fields, dict):
            raise Reject(zendesk_error(400, f"{self.singular[collection]} parameter is missing"))
        if creating and collection == "tickets" and not (fields.get("comment") or fields.get("description")):
            raise Reject(zendesk_error(422, "Description: cannot be blank"))
        if creating and collection != "tickets" and not fields.get("name"):
            raise Reject(zendesk_error(422, "Name: is too short (minimum one character)"))
        if "comment" in fields:  # the first comment becomes the description
            fields = {**fields, "description": dict(fields.pop("comment")).get("body", "")}
        return {k: v for k, v in fields.items() if k not in ("id", "created_at", "updated_at")}

    def export(self, request: Received, collection: str) -> Answer:
        params = query_params(request)
        everything = self.store.items(collection, deleted=True)  # deletions stay in the export
        if "cursor" in params:
            items = after_change(everything, params["cursor"], lambda m: zendesk_error(400, m))
        elif params.get("start_time", "").isdigit():
            items = changed_since(everything, int(params["start_time"]) * 1000, 1000)
        else:
            raise Reject(zendesk_error(400, "start_time or cursor is required"))
        per_page = min(int(params.get("per_page", "1000")), 1000)
        page = items[:per_page]
        # the position after this page; at the end of the stream too, to poll later
        after = change_cursor(page[-1]) if page else params.get("cursor") or change_cursor(
            None, int(params["start_time"]) * 1000)
        url = f"{self.base_url}/api/v2/incremental/{collection}/cursor.json?cursor={after}"
        return Answer(200, {collection: [self.render(collection, it) for it in page],
                            "after_url": url, "after_cursor": after, "before_url": None, "before_cursor": None,
                            "end_of_stream": len(page) == len(items)})

    def time_export(self, request: Received) -> Answer:
        start = query_params(request).get("start_time", "")
        if not start.isdigit():
            raise Reject(zendesk_error(400, "start_time is required"))
        items = changed_since(self.store.items("organizations"), int(start) * 1000, 1000)
        page = items[:1000]
        end_time = page[-1].updated // 1000 if page else int(start)
        return Answer(200, {"organizations": [self.render("organizations", it) for it in page],
                            "next_page": f"{self.base_url}/api/v2/incremental/organizations.json?start_time={end_time}",
                            "count": len(page), "end_time": end_time, "end_of_stream": len(page) < 1000})

    def destroy(self, collection: str, id: str) -> Answer:
        item = self._find(collection, id)
        self._remove(collection, item)
        if collection == "users":
            return Answer(200, {"user": self.render(collection, item)})
        return Answer(204)

