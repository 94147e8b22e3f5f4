"""The Asana emulator: tasks (of a project) and projects (of a workspace).

From Asana's OpenAPI description (Asana/openapi defs/asana_oas.yaml, kept trimmed as
tests/upstream-specs/asana-tasks-projects.json) and developers.asana.com ("Pagination", "Input/output
options"); see AsanaFake.
"""

from __future__ import annotations

from emulators import Received
from fakes.core import (
    Answer, FakeProvider, Item, Reject, changed_since, cursor_page, iso, json_body, parse_iso, query_params,
    random_token, route, whole,
)

COMPACT = {"tasks": ("gid", "resource_type", "name", "resource_subtype"), "projects": ("gid", "resource_type", "name")}


def asana_error(status: int, message: str) -> Answer:
    return Answer(status, {"errors": [{"message": message, "help": "For more information on API status codes and how "
                                                                   "to handle them, read the docs on errors: "
                                                                   "https://developers.asana.com/docs/errors"}]})


class AsanaFake(FakeProvider):
    """Asana under /api/1.0: "tasks" (of the project `fake.project`) and "projects" (of `fake.workspace`).

    Auth: a personal access token as Bearer. Records have string `gid`s; an answer shows the compact
    fields (gid, resource_type, name, ...) plus those `opt_fields` names (modified_at among them).
    GET /tasks: `project` (or `assignee` with `workspace`) is required; `modified_since` (ISO-8601:
    modified at or after); `limit` 1-100; paging by `offset` tokens: `next_page: {offset, path, uri}`,
    null on the last page. GET /projects: `workspace`, `archived`, the same paging (no change filter).
    POST /tasks and PUT /tasks/{gid} take `{"data": {...}}` and answer `{"data": task}`; DELETE
    answers `{"data": {}}`; the same for projects.
    """

    name = "asana"
    id_field = "gid"
    aliases = {"task": "tasks", "tasks": "tasks", "project": "projects", "projects": "projects"}
    project = "1200000000000001"
    workspace = "1100000000000001"

    def make_token(self) -> str:
        return "2/1200000000000000/" + random_token(32, "0123456789abcdef")

    def credential_properties(self, token: str) -> dict:
        return {"kind": "asana_pat", "token": token, "base_url": f"{self.base_url}/api/1.0"}

    def unauthorized(self) -> Answer:
        return asana_error(401, "Not Authorized")

    def error(self, status: int, message: str) -> Answer:
        if status == 429:
            return asana_error(429, "You have made too many requests recently. Please, be chill.")
        return asana_error(status, message)

    def routes(self):
        base = "/api/1.0"
        return [
            route("GET", f"{base}/users/me", lambda r: Answer(200, {"data": {"gid": "1", "name": "Me"}})),
            route("GET", f"{base}/{{kind}}", lambda r, kind: self.list(r, self._kind(kind))),
            route("POST", f"{base}/{{kind}}", lambda r, kind: self.create(r, self._kind(kind))),
            route("GET", f"{base}/{{kind}}/{{gid}}", lambda r, kind, gid: self.show(r, self._kind(kind), gid)),
            route("PUT", f"{base}/{{kind}}/{{gid}}", lambda r, kind, gid: self.update(r, self._kind(kind), gid)),
            route("DELETE", f"{base}/{{kind}}/{{gid}}", lambda r, kind, gid: self.destroy(self._kind(kind), gid)),
        ]

    def _kind(self, kind: str) -> str:
        if kind not in COMPACT:
            raise Reject(asana_error(404, "Unknown object"))
        return kind

    def new_id(self, collection: str) -> str:
        return str(1_300_000_000_000_000 + next(self._serial))

    def sample(self, collection: str, k: int, given: dict) -> dict:
        if collection == "tasks":
            return {"name": f"Task {k}", "notes": "", "completed": False, "resource_subtype": "default_task"}
        return {"name": f"Project {k}", "archived": False, "color": "light-green"}

    def render(self, collection: str, item: Item, opt_fields: str | None = None) -> dict:
        """The full record (as writes answer), or in a list its compact form plus `opt_fields`."""
        full = {"gid": item.id, "resource_type": collection[:-1], **item.fields,
                "created_at": iso(item.created), "modified_at": iso(item.updated)}
        if opt_fields is None:
            return full
        wanted = set(COMPACT[collection]) | {f for f in opt_fields.split(",") if f}
        return {k: v for k, v in full.items() if k in wanted}

    def list(self, request: Received, collection: str) -> Answer:
        params = query_params(request)
        items = self.store.items(collection)
        if collection == "tasks":
            if not params.get("project") and not (params.get("assignee") and params.get("workspace")):
                raise Reject(asana_error(400, "project: Missing input"))
            if params.get("project") and params["project"] != self.project:
                raise Reject(asana_error(404, "project: Not a recognized ID"))
            if "modified_since" in params:
                try:
                    items = changed_since(items, parse_iso(params["modified_since"]))
                except ValueError:
                    raise Reject(asana_error(400, "modified_since: Not a valid date")) from None
        elif params.get("workspace") != self.workspace:
            raise Reject(asana_error(400, "workspace: Missing input"))
        items = sorted(items, key=lambda it: it.seq)  # lists come in a stable order, not by change time
        limit = whole(params.get("limit"), 100, 100)
        page, offset = cursor_page(items, params.get("offset"), limit, lambda m: asana_error(400, "offset: " + m))
        next_page = None
        if offset:
            query = f"?limit={limit}&offset={offset}"
            next_page = {"offset": offset, "path": f"/{collection}{query}",
                         "uri": f"{self.base_url}/api/1.0/{collection}{query}"}
        return Answer(200, {"data": [self.render(collection, it, params.get("opt_fields", "")) for it in page],
                            "next_page": next_page})

    def _find(self, collection: str, gid: str) -> Item:
        item = self.store.find(collection, gid)
        if item is None or item.deleted:
            raise Reject(asana_error(404, f"{collection[:-1]}: Unknown object: {gid}"))
        return item

    def _fields(self, request: Received, collection: str, creating: bool) -> dict:
        data = json_body(request, lambda m: asana_error(400, m)).get("data")
        if not isinstance(data, dict):
            raise Reject(asana_error(400, "data: Missing input"))
        if creating and collection == "tasks" and not (data.get("projects") or data.get("workspace")):
            raise Reject(asana_error(400, "You should specify one of workspace, parent, projects"))
        return {k: v for k, v in data.items() if k not in ("gid", "created_at", "modified_at", "resource_type")}

    def create(self, request: Received, collection: str) -> Answer:
        item = self._insert(collection, {**self.sample(collection, 0, {}), **self._fields(request, collection, True)})
        return Answer(201, {"data": self.render(collection, item)})

    def show(self, request: Received, collection: str, gid: str) -> Answer:
        return Answer(200, {"data": self.render(collection, self._find(collection, gid))})

    def update(self, request: Received, collection: str, gid: str) -> Answer:
        item = self._find(collection, gid)
        self._modify(collection, item, {**item.fields, **self._fields(request, collection, False)})
        return Answer(200, {"data": self.render(collection, item)})

    def destroy(self, collection: str, gid: str) -> Answer:
        self._remove(collection, self._find(collection, gid))
        return Answer(200, {"data": {}})
