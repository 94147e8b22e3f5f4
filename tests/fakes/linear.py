"""The Linear emulator: its GraphQL API, executed by graphql-core against Linear's own schema.

The schema is tests/upstream-specs/linear-issues-projects-comments.graphql: Linear's published SDL
(linear/linear packages/sdk/src/schema.graphql) cut down to the queries and mutations Headwater
uses, so a query Headwater sends that Linear would refuse (an unknown field, a wrong argument
type) is refused here too. See LinearFake.
"""

from __future__ import annotations

import json
import uuid
from functools import cache
from pathlib import Path

from emulators import Received
from fakes.core import Answer, FakeProvider, Item, iso, parse_iso, random_token, route
from graphql import GraphQLError, GraphQLSchema, build_schema, execute_sync, parse, validate

SCHEMA = Path(__file__).resolve().parent.parent / "upstream-specs" / "linear-issues-projects-comments.graphql"


@cache
def linear_schema() -> GraphQLSchema:
    return build_schema(SCHEMA.read_text())


def linear_errors(status: int, message: str, code: str) -> Answer:
    extensions = {"code": code, "userPresentableMessage": message}
    return Answer(status, {"errors": [{"message": message, "extensions": extensions}]})


class LinearFake(FakeProvider):
    """Linear's GraphQL API at POST /graphql: collections "issues", "projects" and "comments".

    Auth: an API key as `Authorization: <key>` (no scheme) or an OAuth token as `Bearer <token>`.
    Queries `issues` / `projects`: Relay connections (`first`, default 50, at most 250; `after`;
    `nodes` and `pageInfo { hasNextPage endCursor }`), `filter: {updatedAt: {gte|gt|lte|lt: DateTime}}`,
    `orderBy: createdAt (default) | updatedAt` (newest first), `includeArchived` (default false:
    archived and trashed records are left out). `issueDelete` / `projectDelete` move a record to
    the trash: it stays readable with includeArchived, `trashed: true` and `archivedAt` set;
    `commentDelete` deletes a comment outright. `issueCreate(input)` / `issueUpdate(id, input)`
    answer `{success, issue}`; the same for projects and comments.
    Invalid queries (against the schema) answer HTTP 400 with `errors`; a mutation refused while it
    runs (an id that names nothing) answers 200 with `errors` and `data: null`, as GraphQL servers do.
    """

    name = "linear"
    aliases = {"issue": "issues", "issues": "issues", "project": "projects", "projects": "projects",
               "comment": "comments", "comments": "comments"}
    singular = {"issues": "issue", "projects": "project", "comments": "comment"}
    trashed = {"issues", "projects"}  # deleting these moves them to the trash; a comment is gone

    def make_token(self) -> str:
        return "lin_api_" + random_token(40)

    def credential_properties(self, token: str) -> dict:
        return {"kind": "linear_api_key", "api_key": token}

    def authorized(self, request: Received) -> bool:
        return request.header("authorization") in (self.token, f"Bearer {self.token}")

    def unauthorized(self) -> Answer:
        return linear_errors(401, "Authentication required, not authenticated", "AUTHENTICATION_ERROR")

    def error(self, status: int, message: str) -> Answer:
        if status == 429:
            return linear_errors(429, "Rate limit exceeded", "RATELIMITED")
        return linear_errors(status, message, "INTERNAL_SERVER_ERROR" if status >= 500 else "INVALID_INPUT")

    def routes(self):
        return [route("POST", "/graphql", self.graphql)]

    def new_id(self, collection: str) -> str:
        return str(uuid.uuid4())

    def sample(self, collection: str, k: int, given: dict) -> dict:
        if collection == "issues":
            return {"title": f"Fix the flux capacitor ({k})", "description": "It flickers.", "priority": 2,
                    "number": k}
        if collection == "comments":
            return {"body": f"Looked into it ({k}).", "issueId": "issue-1"}
        return {"name": f"Project {k}", "description": "", "priority": 0}

    def render(self, collection: str, item: Item) -> dict:
        fields = dict(item.fields)
        out = {"id": item.id, **fields, "createdAt": iso(item.created), "updatedAt": iso(item.updated),
               "archivedAt": iso(item.deleted) if item.deleted else None}
        if collection in self.trashed:
            out["trashed"] = bool(item.deleted)
        if collection == "issues":
            out["identifier"] = f"ENG-{fields.get('number', 0)}"
        return out

    # -- GraphQL -------------------------------------------------------------------------------

    def graphql(self, request: Received) -> Answer:
        try:
            body = json.loads(request.body or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return linear_errors(400, "Must provide query string.", "GRAPHQL_VALIDATION_FAILED")
        root = {}
        for collection, one in self.singular.items():
            root |= {collection: self._connection(collection), f"{one}Create": self._create(collection),
                     f"{one}Update": self._update(collection), f"{one}Delete": self._delete(collection)}
        # A query that does not parse or fit the schema is refused before it runs (HTTP 400); an
        # error while it runs (an unknown id) answers 200 with `errors` beside `data`, as GraphQL does.
        try:
            document = parse(body["query"])
        except GraphQLError as error:
            return self._errors(400, [error], None)
        invalid = validate(linear_schema(), document)
        if invalid:
            return self._errors(400, invalid, None)
        result = execute_sync(linear_schema(), document, root_value=root, variable_values=body.get("variables"),
                              operation_name=body.get("operationName"))
        if result.errors:
            request_error = any(e.path is None for e in result.errors)  # e.g. a variable of the wrong type
            return self._errors(400 if request_error else 200, result.errors, result.data)
        return Answer(200, {"data": result.data})

    @staticmethod
    def _errors(status: int, errors: list[GraphQLError], data) -> Answer:
        shown = [{"message": e.message, "extensions": {"code": (e.extensions or {}).get("code", "INVALID_INPUT")}}
                 for e in errors]
        return Answer(status, {"errors": shown, "data": data} if status == 200 else {"errors": shown})

    def _connection(self, collection: str):
        def resolve(info, first=50, after=None, filter=None, includeArchived=False, orderBy="createdAt", **_):
            if first > 250:
                raise GraphQLError("first must be at most 250", extensions={"code": "INVALID_INPUT"})
            items = self.store.items(collection, deleted=bool(includeArchived) and collection in self.trashed)
            for op, value in ((filter or {}).get("updatedAt") or {}).items():
                bound = parse_iso(value)
                test = {"gte": lambda t: t >= bound, "gt": lambda t: t > bound, "lte": lambda t: t <= bound,
                        "lt": lambda t: t < bound}.get(op)
                if test is None:
                    raise GraphQLError(f"this emulator does not filter updatedAt by {op}")
                items = [it for it in items if test(it.updated)]
            # newest first: a cursor is the position after the last node, held as (time, seq) of it
            key = (lambda it: (it.updated, it.seq)) if orderBy == "updatedAt" else (lambda it: (it.created, it.seq))
            items = sorted(items, key=key, reverse=True)
            if after:
                position = self._position(after)
                items = [it for it in items if key(it) < position]
            page = items[:first]
            return {"nodes": [self.render(collection, it) for it in page],
                    "pageInfo": {"hasNextPage": len(items) > first, "hasPreviousPage": bool(after),
                                 "startCursor": self._cursor(page[0], key) if page else None,
                                 "endCursor": self._cursor(page[-1], key) if page else None}}
        return resolve

    @staticmethod
    def _cursor(item: Item, key) -> str:
        return json.dumps(list(key(item))).encode().hex()

    @staticmethod
    def _position(cursor: str) -> tuple:
        try:
            return tuple(json.loads(bytes.fromhex(cursor)))
        except ValueError:
            raise GraphQLError("Invalid cursor", extensions={"code": "INVALID_INPUT"}) from None

    def _payload(self, collection: str, item: Item) -> dict:
        return {"success": True, "lastSyncId": float(item.seq),
                self.singular[collection]: self.render(collection, item)}

    def _find(self, collection: str, id: str) -> Item:
        item = self.store.find(collection, id)
        if item is None or item.deleted:
            raise GraphQLError("Entity not found", extensions={"code": "INVALID_INPUT"})
        return item

    def _create(self, collection: str):
        def resolve(info, input, **_):
            number = len(self.store.collections[collection]) + 1
            item = self._insert(collection, {**self.sample(collection, number, input), **input},
                                id=input.get("id"))
            return self._payload(collection, item)
        return resolve

    def _update(self, collection: str):
        def resolve(info, id, input, **_):
            item = self._find(collection, id)
            self._modify(collection, item, {**item.fields, **input})
            return self._payload(collection, item)
        return resolve

    def _delete(self, collection: str):
        def resolve(info, id, **_):
            item = self._find(collection, id)
            self._remove(collection, item)
            return {"success": True, "lastSyncId": float(item.seq), "entity": self.render(collection, item),
                    "entityId": item.id}
        return resolve
