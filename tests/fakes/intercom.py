"""The Intercom emulator: contacts and conversations, their search APIs, and contact writes.

From Intercom's OpenAPI description (intercom/Intercom-OpenAPI descriptions/2.11, kept trimmed as
tests/upstream-specs/intercom-contacts-conversations.json): "Search contacts", "Search
conversations", "Pagination"; see IntercomFake.
"""

from __future__ import annotations

from emulators import Received
from fakes.core import (
    EMAIL, Answer, FakeProvider, Item, Reject, after_change, change_cursor, cursor_page, json_body, random_token,
    route,
)

DAY = 86_400
DATE_FIELDS = {"created_at", "updated_at"}


def intercom_error(status: int, code: str, message: str) -> Answer:
    return Answer(status, {"type": "error.list", "request_id": "req-1", "errors": [{"code": code, "message": message}]})


class IntercomFake(FakeProvider):
    """Intercom's REST API: "contacts" and "conversations".

    Auth: an access token as Bearer. Times are epoch seconds. POST /contacts/search and
    /conversations/search take `{query, pagination: {per_page (max 150), starting_after}, sort}`:
    a query is `{field, operator, value}` or `{operator: AND|OR, value: [queries]}`; date fields
    (created_at, updated_at) compare by UTC calendar day and take only `=`, `<` and `>` ("`>`
    matches from the start of the next day"), anything else is refused. Answers: contacts
    `{type: list, data, total_count, pages}`, conversations `{type: conversation.list,
    conversations, total_count, pages}`, `pages.next.starting_after` naming the next page (absent
    on the last one). POST /contacts, PUT /contacts/{id} answer the contact; DELETE
    /contacts/{id} answers `{type: contact, id, deleted: true}`, and the contact leaves the search.
    """

    name = "intercom"
    aliases = {"contact": "contacts", "contacts": "contacts", "conversation": "conversations",
               "conversations": "conversations"}

    def make_token(self) -> str:
        return "dG9rOj" + random_token(40)

    def credential_properties(self, token: str) -> dict:
        return {"kind": "intercom_access_token", "access_token": token}

    def unauthorized(self) -> Answer:
        return intercom_error(401, "unauthorized", "Access Token Invalid")

    def error(self, status: int, message: str) -> Answer:
        if status == 429:
            return intercom_error(429, "rate_limit_exceeded", "Rate Limit Exceeded")
        if status == 404:
            return intercom_error(404, "not_found", "Resource Not Found")
        return intercom_error(status, "server_error" if status >= 500 else "parameter_invalid", message)

    def routes(self):
        return [
            route("GET", "/me", lambda r: Answer(200, {"type": "admin", "id": "1", "email": "admin@example.com"})),
            route("POST", "/contacts/search", lambda r: self.search(r, "contacts")),
            route("POST", "/conversations/search", lambda r: self.search(r, "conversations")),
            route("POST", "/contacts", self.create),
            route("GET", "/contacts/{id}", lambda r, id: Answer(200, self.render("contacts", self._find(id)))),
            route("PUT", "/contacts/{id}", self.update),
            route("DELETE", "/contacts/{id}", self.destroy),
        ]

    def new_id(self, collection: str) -> str:
        return f"{next(self._serial):024x}" if collection == "contacts" else str(100 + next(self._serial))

    def sample(self, collection: str, k: int, given: dict) -> dict:
        if collection == "contacts":
            return {"role": "user", "email": f"user{k}@example.com", "name": f"User {k}"}
        return {"title": f"Question {k}", "state": "open", "open": True, "priority": "not_priority"}

    def render(self, collection: str, item: Item) -> dict:
        kind = "contact" if collection == "contacts" else "conversation"
        return {"type": kind, "id": item.id, **item.fields, "created_at": item.created // 1000,
                "updated_at": item.updated // 1000}

    # -- search ----------------------------------------------------------------------------------

    def _matcher(self, query):
        if not isinstance(query, dict) or "operator" not in query:
            raise Reject(intercom_error(400, "parameter_invalid", "query must have an operator"))
        operator, value = query["operator"], query.get("value")
        if operator in ("AND", "OR"):
            if not isinstance(value, list) or not value:
                raise Reject(intercom_error(400, "parameter_invalid", f"{operator} needs a list of queries"))
            tests = [self._matcher(q) for q in value]
            return (lambda r: all(t(r) for t in tests)) if operator == "AND" else (lambda r: any(t(r) for t in tests))
        name = query.get("field")
        if name in DATE_FIELDS:
            if operator not in ("=", "<", ">") or not isinstance(value, int):
                raise Reject(intercom_error(400, "parameter_invalid",
                                            f"Unsupported operator {operator} for field {name} of type date"))
            day = value // DAY
            return {"=": lambda r: r[name] // DAY == day, "<": lambda r: r[name] // DAY < day,
                    ">": lambda r: r[name] // DAY > day}[operator]
        if operator == "=":
            return lambda r: r.get(name) == value
        if operator == "!=":
            return lambda r: r.get(name) != value
        raise Reject(intercom_error(400, "parameter_invalid", f"this emulator does not search by {operator}"))

    def search(self, request: Received, collection: str) -> Answer:
        body = json_body(request, lambda m: intercom_error(400, "parameter_invalid", m))
        if "query" not in body:
            raise Reject(intercom_error(400, "parameter_not_found", "query parameter is required"))
        test = self._matcher(body["query"])
        paging = body.get("pagination") or {}
        per_page = paging.get("per_page", 20 if collection == "conversations" else 50)
        if not isinstance(per_page, int) or not 1 <= per_page <= 150:
            raise Reject(intercom_error(400, "parameter_invalid", "per_page must be between 1 and 150"))
        sort = body.get("sort") or {"field": "created_at", "order": "descending"}
        items = [it for it in self.store.items(collection) if test(self.render(collection, it))]
        total = len(items)
        invalid = lambda m: intercom_error(400, "parameter_invalid", m)  # noqa: E731
        cursor = paging.get("starting_after")
        if sort.get("field") == "updated_at" and sort.get("order") == "ascending":
            # the cursor is the position after the last record shown: it holds while records change
            items = after_change(items, cursor, invalid) if cursor else \
                sorted(items, key=lambda it: (it.updated, it.seq))
            page = items[:per_page]
            after = change_cursor(page[-1]) if len(items) > per_page else None
        elif sort.get("field") in DATE_FIELDS and sort.get("order") in ("ascending", "descending"):
            field = "updated" if sort["field"] == "updated_at" else "created"
            key = lambda it: (getattr(it, field), it.seq)  # noqa: E731
            items = sorted(items, key=key, reverse=sort["order"] == "descending")
            page, after = cursor_page(items, cursor, per_page, invalid)
        else:
            raise Reject(invalid("this emulator sorts by created_at or updated_at"))
        pages = {"type": "pages", "page": 1, "per_page": per_page, "total_pages": -(-total // per_page)}
        if after:
            pages["next"] = {"per_page": per_page, "starting_after": after}
        rendered = [self.render(collection, it) for it in page]
        if collection == "contacts":
            return Answer(200, {"type": "list", "data": rendered, "total_count": total, "pages": pages})
        return Answer(200, {"type": "conversation.list", "conversations": rendered, "total_count": total,
                            "pages": pages})

    # -- contact writes --------------------------------------------------------------------------

    def _find(self, id: str) -> Item:
        item = self.store.find("contacts", id)
        if item is None or item.deleted:
            raise Reject(intercom_error(404, "not_found", "User Not Found"))
        return item

    def _fields(self, request: Received, creating: bool) -> dict:
        body = json_body(request, lambda m: intercom_error(400, "parameter_invalid", m))
        if creating and not (body.get("email") or body.get("external_id") or body.get("role") == "lead"):
            raise Reject(intercom_error(400, "parameter_invalid",
                                        "Contact must have an email, external_id or role 'lead'"))
        if body.get("email") and not EMAIL.match(str(body["email"])):
            raise Reject(intercom_error(400, "parameter_invalid", "Email address is invalid"))
        return {k: v for k, v in body.items() if k not in ("id", "type", "created_at", "updated_at")}

    def create(self, request: Received) -> Answer:
        item = self._insert("contacts", {"role": "user", **self._fields(request, True)})
        return Answer(200, self.render("contacts", item))

    def update(self, request: Received, id: str) -> Answer:
        item = self._find(id)
        self._modify("contacts", item, {**item.fields, **self._fields(request, False)})
        return Answer(200, self.render("contacts", item))

    def destroy(self, request: Received, id: str) -> Answer:
        item = self._find(id)
        self._remove("contacts", item)
        return Answer(200, {"type": "contact", "id": id, "external_id": item.fields.get("external_id"),
                            "deleted": True})
