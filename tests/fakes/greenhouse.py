"""The Greenhouse Harvest emulator: candidates.

From grnhse/greenhouse-api-docs (source/includes/harvest/_introduction.md: authentication,
pagination; _candidates.md: "List Candidates"); see GreenhouseFake.
"""

from __future__ import annotations

import base64
from urllib.parse import urlencode

from emulators import Received
from fakes.core import (
    Answer, FakeProvider, Item, Reject, iso, parse_iso, query_params, random_token, route, whole,
)


def greenhouse_error(status: int, message: str) -> Answer:
    return Answer(status, {"message": message})


class GreenhouseFake(FakeProvider):
    """Greenhouse Harvest under /v1: "candidates" and "jobs".

    Auth: HTTP Basic, the API key as the username and a blank password. Times ISO-8601 with
    milliseconds ("2024-01-15T10:30:00.123Z"). GET /v1/candidates and /v1/jobs: `per_page` (1-500, default 100),
    `page`, `updated_after` / `created_after` (ISO-8601); paging in the RFC 5988 `Link` header
    (rel next / prev / last, absolute URLs) in id order. GET /v1/{candidates,jobs}/{id}. Writes need an
    `On-Behalf-Of` user header, refused without one (400).
    """

    name = "greenhouse"
    aliases = {"candidate": "candidates", "candidates": "candidates", "job": "jobs", "jobs": "jobs"}

    def make_token(self) -> str:
        return random_token(32, "0123456789abcdef")

    def credential_properties(self, token: str) -> dict:
        return {"kind": "greenhouse_api_key", "api_key": token, "base_url": f"{self.base_url}/v1"}

    def authorized(self, request: Received) -> bool:
        return request.header("authorization") == "Basic " + base64.b64encode(f"{self.token}:".encode()).decode()

    def unauthorized(self) -> Answer:
        return greenhouse_error(401, "Invalid Basic Auth credentials")

    def error(self, status: int, message: str) -> Answer:
        if status == 429:
            return greenhouse_error(429, "Rate limit exceeded")
        if status == 404:
            return greenhouse_error(404, "Resource not found")
        return greenhouse_error(status, message)

    def routes(self):
        return [
            route("GET", "/v1/{kind}", lambda r, kind: self.list(r, self._kind(kind))),
            route("GET", "/v1/{kind}/{id}",
                  lambda r, kind, id: Answer(200, self.render(kind, self._find(self._kind(kind), id)))),
            route("POST", "/v1/candidates", self.refuse_without_user),
            route("PATCH", "/v1/candidates/{id}", lambda r, id: self.refuse_without_user(r)),
        ]

    def _kind(self, kind: str) -> str:
        if kind not in ("candidates", "jobs"):
            raise Reject(self.error(404, ""))
        return kind

    def new_id(self, collection: str) -> str:
        return str(40_000_000 + next(self._serial))

    def sample(self, collection: str, k: int, given: dict) -> dict:
        if collection == "jobs":
            return {"name": f"Engineer {k}", "status": "open", "confidential": False, "departments": [], "offices": []}
        return {"first_name": "Candidate", "last_name": str(k), "company": "Acme", "title": "Engineer",
                "email_addresses": [{"value": f"candidate{k}@example.com", "type": "personal"}]}

    def render(self, collection: str, item: Item) -> dict:
        out = {"id": int(item.id), **item.fields, "created_at": iso(item.created), "updated_at": iso(item.updated)}
        if collection == "candidates":
            out |= {"last_activity": iso(item.updated), "is_private": False}
        return out

    def _find(self, collection: str, id: str) -> Item:
        item = self.store.find(collection, id)
        if item is None or item.deleted:
            raise Reject(self.error(404, ""))
        return item

    def list(self, request: Received, collection: str) -> Answer:
        params = query_params(request)
        items = self.store.items(collection)
        for name in ("updated_after", "created_after"):
            if name in params:
                try:
                    bound = parse_iso(params[name])
                except ValueError:
                    raise Reject(greenhouse_error(422, f"{name} must be an ISO-8601 timestamp")) from None
                items = [it for it in items if (it.updated if name == "updated_after" else it.created) >= bound]
        items = sorted(items, key=lambda it: int(it.id))
        per_page = whole(params.get("per_page"), 100, 500)
        page = max(whole(params.get("page"), 1, 10**9), 1)
        last = max(-(-len(items) // per_page), 1)
        url = f"{self.base_url}/v1/{collection}"
        links = []
        for rel, number in (("next", page + 1), ("prev", page - 1), ("last", last)):
            if (rel == "next" and page < last) or (rel == "prev" and page > 1) or rel == "last":
                links.append(f'<{url}?{urlencode({**params, "page": number})}>; rel="{rel}"')
        body = [self.render(collection, it) for it in items[(page - 1) * per_page:page * per_page]]
        return Answer(200, body, [("link", ",".join(links))])

    def refuse_without_user(self, request: Received) -> Answer:
        if not request.header("on-behalf-of"):
            return greenhouse_error(400, "Missing header: On-Behalf-Of")
        return greenhouse_error(501, "This emulator does not write candidates")
