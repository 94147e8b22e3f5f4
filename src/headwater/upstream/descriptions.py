"""The catalogue held against the providers' own API descriptions, and the fields they define.

A directory of descriptions (tests/upstream-specs: OpenAPI documents trimmed to the operations
Headwater uses, GraphQL schemas) comes with an `index.yaml` saying which provider is described by
which files and which providers publish no description (and why). For every listing
(`read.list`, `read.changes`, `read.deletions`) and write (`write.create`, `update`, `delete`,
`fetch`) of a collection, `check` answers the problems found, each naming the entry:

- the operation exists: the method, and our path (after the base URL's path) matched against the
  description's servers and path templates; `{id}` and `{NAME}` match a `{param}`, and a `{NAME}`
  may stand for several (GitHub's `{repository}` is `{owner}/{repo}`);
- the query parameters we send (and `next.param` on a GET) are defined by the operation or its
  path item (`a[]` by an array parameter, `a[b]` by an object one: Stripe's `created[gte]`);
  a POST listing's body keys and `next.param` are properties of its request body;
- `items`, `record`, `id`, `updated_at`, `deleted_when.path` and paging (`next.value`,
  `next.while`, `next.url`, a `header:` URL among the answer's headers) exist in the 2xx answer's
  schema ($ref, allOf, oneOf and anyOf followed). A free-form object (no properties declared)
  accepts any path below it; a schema cut off by the trimming (`x-headwater-trimmed`) does not;
- a GraphQL listing's query parses and validates against the schema, and its paths are selected
  by the query.

`collection_fields` gives each collection's fields (name, type, description) from the record
schema its listing (or else its fetch or create) answers with. `python -m
headwater.upstream.descriptions DIR OUT` writes them for every collection as JSON (`make gen`
writes src/headwater/upstream/collection_fields.json, which discovery serves: the server never
reads DIR).
"""

from __future__ import annotations

import functools
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from headwater.upstream.catalogue import Collection, Listing, Provider, ProviderCatalogue, WriteRequest

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
_PARAM = re.compile(r"^\{[^{}]+\}$")
_QUERY_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


# --- the descriptions ------------------------------------------------------------------------

@dataclass
class Operation:
    method: str  # "GET"
    path: str  # as the description spells it: "/repos/{owner}/{repo}/issues"
    spec: dict[str, Any]
    item: dict[str, Any]  # its path item (shared parameters)
    document: OpenAPIDocument

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    def parameters(self, location: str) -> dict[str, dict[str, Any]]:
        found = {}
        for raw in [*self.item.get("parameters", []), *self.spec.get("parameters", [])]:
            parameter = self.document.resolve(raw)
            if parameter.get("in") == location:
                found[parameter["name"]] = parameter
        return found

    def answer(self) -> tuple[str, dict[str, Any]] | None:
        """The first 2xx answer: (status, response object)."""
        for status, response in self.spec.get("responses", {}).items():
            if str(status).startswith("2"):
                return str(status), self.document.resolve(response)
        return None

    def answer_schema(self) -> dict[str, Any] | None:
        found = self.answer()
        return _json_schema(self.document, found[1]) if found else None

    def request_schema(self) -> dict[str, Any] | None:
        body = self.spec.get("requestBody")
        return _json_schema(self.document, self.document.resolve(body)) if body else None


def _json_schema(document: OpenAPIDocument, holder: dict[str, Any]) -> dict[str, Any] | None:
    content = holder.get("content") or {}
    for media in sorted(content, key=lambda m: (m != "application/json", "json" not in m)):
        if "json" in media and "schema" in content[media]:
            return document.resolve(content[media]["schema"])
    return None


class OpenAPIDocument:
    def __init__(self, name: str, spec: dict[str, Any]):
        self.name = name
        self.spec = spec
        servers = [s.get("url", "/") for s in spec.get("servers") or [{"url": "/"}]]
        # (host or "", path segments) of each server; `{var}` in either stays a parameter
        self.servers = [(urlsplit(url).hostname or "", _segments(urlsplit(url).path)) for url in servers]
        self.operations = [
            Operation(method.upper(), path, operation, item, self)
            for path, item in (spec.get("paths") or {}).items()
            for method, operation in item.items() if method in HTTP_METHODS
        ]

    def resolve(self, node: Any) -> Any:
        seen = 0
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/") or seen > 50:
                raise ValueError(f"{self.name}: cannot follow $ref {ref!r}")
            node = functools.reduce(lambda value, key: value[key.replace("~1", "/").replace("~0", "~")],
                                    ref[2:].split("/"), self.spec)
            seen += 1
        return node

    def hosts(self) -> list[str]:
        return [host for host, _ in self.servers if host]

    def find(self, method: str, segments: list[str]) -> Operation | None:
        """The operation `method` on our full path (base URL's path + ours), the most literal match."""
        best, best_score = None, -1
        for operation in self.operations:
            if operation.method != method:
                continue
            for _, prefix in self.servers:
                score = _match(segments, [*prefix, *_segments(operation.path)])
                if score is not None and score > best_score:
                    best, best_score = operation, score
        return best


class GraphQLSchema:
    def __init__(self, name: str, sdl: str):
        from graphql import build_schema  # a dev dependency: only the checks read schemas

        self.name = name
        self.schema = build_schema(sdl)


def _segments(path: str) -> list[str]:
    return [segment for segment in path.split("/") if segment]


def _match(ours: list[str], theirs: list[str]) -> int | None:
    """How many literal segments agree when our path fits their template (None: it does not)."""
    if not ours or not theirs:
        return 0 if not ours and not theirs else None
    head, their_head = ours[0], theirs[0]
    if _PARAM.match(head):  # ours is a placeholder: one or more of their parameters
        scores = []
        for span in range(1, len(theirs) + 1):
            if not _PARAM.match(theirs[span - 1]):
                break
            if (score := _match(ours[1:], theirs[span:])) is not None:
                scores.append(score)
        return max(scores) if scores else None
    rest = _match(ours[1:], theirs[1:])
    if rest is None:
        return None
    if _PARAM.match(their_head):  # a literal of ours is a value of their parameter
        return rest
    return rest + 1 if head == their_head else None


@dataclass
class Descriptions:
    """A directory of descriptions and its index.yaml."""

    root: Path
    described: dict[str, list[str]]
    without_description: dict[str, str]
    # problem (as `check` words it) -> why it is right all the same: where the provider's
    # documentation says more than its description (a field `opt_fields` adds to a compact list)
    accepted: dict[str, str] = field(default_factory=dict)
    _loaded: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, root: str | Path) -> Descriptions:
        root = Path(root)
        index = yaml.safe_load((root / "index.yaml").read_text()) or {}
        accepted = {item["problem"]: item["reason"] for item in index.get("accepted") or []}
        return cls(root, dict(index.get("described") or {}), dict(index.get("without_description") or {}), accepted)

    def document(self, name: str) -> OpenAPIDocument | GraphQLSchema:
        if name not in self._loaded:
            path = self.root / name
            if name.endswith(".graphql"):
                self._loaded[name] = GraphQLSchema(name, path.read_text())
            else:
                text = path.read_text()
                spec = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
                self._loaded[name] = OpenAPIDocument(name, spec)
        return self._loaded[name]

    def documents(self, provider: str, kind: type) -> list:
        return [d for d in map(self.document, self.described.get(provider, [])) if isinstance(d, kind)]


# --- the catalogue's entries ------------------------------------------------------------------

def entries(collection: Collection) -> list[tuple[str, Listing | WriteRequest]]:
    """(where, request) of each listing and write of `collection`: "read.list", "write.update"..."""
    found: list[tuple[str, Listing | WriteRequest]] = []
    if read := collection.read:
        found.append(("read.list", read.list))
        if read.changes is not read.list:
            found.append(("read.changes", read.changes))
        if read.deletions:
            found.append(("read.deletions", read.deletions))
    if write := collection.write:
        found += [(f"write.{name}", getattr(write, name)) for name in write.OPERATIONS if getattr(write, name)]
    return found


def is_graphql(request: Listing | WriteRequest) -> bool:
    body = getattr(request, "body", None)
    return isinstance(body, dict) and isinstance(body.get("query"), str)


def _full_path(provider: Provider, path: str) -> list[str]:
    base = urlsplit(provider.base_url or "")
    return [*_segments(base.path), *_segments(path.split("?", 1)[0])]


def _host_pattern(host: str) -> re.Pattern:
    """`host` as a pattern where each `{label}` stands for any one label."""
    return re.compile("^" + re.sub(r"\\\{[^}]*\\\}", "[^.]+", re.escape(host)) + "$")


def _host_problem(provider: Provider, document: OpenAPIDocument) -> str | None:
    host = urlsplit(provider.base_url or "").hostname
    theirs = document.hosts()
    if not host or not theirs:
        return None
    if any(_host_pattern(t).match(host) or _host_pattern(host).match(t) for t in theirs):
        return None
    return f"the base URL's host {host} is not a server of {document.name} ({', '.join(theirs)})"


def check(catalogue: ProviderCatalogue, collection_id: str, where: str, descriptions: Descriptions,
          request: Listing | WriteRequest | None = None) -> list[str]:
    """The problems of one entry of the catalogue (`request` in its place: the tests' altered
    copies) against its provider's descriptions, each naming the entry."""
    collection = catalogue.collection(collection_id)
    provider = catalogue.provider(collection.provider)
    request = request or dict(entries(collection))[where]
    name = f"{collection.id} {where}"
    if is_graphql(request):
        schemas = descriptions.documents(provider.key, GraphQLSchema)
        if not schemas:
            return [f"{name}: a GraphQL listing, but no GraphQL schema describes {provider.key}"]
        return [f"{name}: {problem}" for problem in _graphql_problems(schemas[0], request, collection, where)]
    documents = descriptions.documents(provider.key, OpenAPIDocument)
    if not documents:
        return [f"{name}: no OpenAPI document describes {provider.key}"]
    segments = _full_path(provider, request.path)
    for document in documents:
        if operation := document.find(request.method, segments):
            problems = [p for p in [_host_problem(provider, document)] if p]
            problems += _request_problems(operation, request)
            if isinstance(request, WriteRequest):
                problems += _write_answer_problems(collection, where, operation)
            else:
                problems += _answer_problems(operation, request)
            return [f"{name}: {problem}" for problem in problems]
    shown = "/" + "/".join(segments)
    return [f"{name}: no operation {request.method} {shown} in {', '.join(d.name for d in documents)} "
            f"(base URL {provider.base_url})"]


def _request_problems(operation: Operation, request: Listing | WriteRequest) -> list[str]:
    problems = []
    defined = operation.parameters("query")
    sent = list(request.query)
    paging = getattr(request, "next", {}) or {}
    body = getattr(request, "body", None)
    if "param" in paging and (operation.method == "GET" or body is None):
        sent.append(paging["param"])
    for key in sent:
        if not _query_defined(operation.document, defined, key):
            problems.append(f"query parameter {key!r} is not defined by {operation}")
    if isinstance(body, dict):
        schema = operation.request_schema()
        for key in [*body, *([paging["param"]] if "param" in paging else [])]:
            # a dotted key is a property inside one (Intercom's pagination.starting_after)
            status = _find(operation.document, schema, _path(key))[0] if schema is not None else MISSING
            if status in (MISSING, TRIMMED):
                problems.append(f"request body property {key!r} is not defined by {operation}")
    return problems


def _query_defined(document: OpenAPIDocument, defined: dict[str, dict], key: str) -> bool:
    if key in defined:
        return True
    match = _QUERY_KEY.match(key)
    if not match or match.group(1) not in defined or not match.group(2):
        return False
    parameter = defined[match.group(1)]
    suffix = match.group(2)
    branches = _branches(document, parameter.get("schema") or {})
    if suffix == "[]":
        return any(b.get("type") == "array" for b in branches)
    inner = suffix[1:-1]
    objects = [b for b in branches if b.get("type") == "object" or "properties" in b]
    declared = [b["properties"] for b in objects if b.get("properties")]
    if "][" in inner or not objects:
        return False
    if declared:  # an object parameter names its keys: created[gte]
        return any(inner in properties for properties in declared)
    return parameter.get("style") == "deepObject"  # a free-form object sent as a[key]


def _branches(document: OpenAPIDocument, schema: Any) -> list[dict[str, Any]]:
    schema = document.resolve(schema)
    if not isinstance(schema, dict):
        return []
    found = [schema]
    for key in ("allOf", "oneOf", "anyOf"):
        for sub in schema.get(key) or []:
            found += _branches(document, sub)
    return found


OK, FREE, MISSING, TRIMMED = "ok", "free", "missing", "trimmed"


def _find(document: OpenAPIDocument, schema: Any, parts: list[str]) -> tuple[str, Any]:
    """(status, schema at `parts` below `schema`): OK, FREE (a free-form object on the way: any
    path below it is accepted), MISSING, or TRIMMED (the trimmed copy cut it off: the schema's name)."""
    schema = document.resolve(schema)
    if not isinstance(schema, dict):
        return MISSING, None
    if not parts:
        return OK, schema
    if "x-headwater-trimmed" in schema:
        return TRIMMED, schema["x-headwater-trimmed"]
    composed = [sub for key in ("allOf", "oneOf", "anyOf") for sub in schema.get(key) or []]
    if composed:
        own = {k: v for k, v in schema.items() if k not in ("allOf", "oneOf", "anyOf")}
        results = [_find(document, sub, parts) for sub in composed]
        if own.get("properties") or own.get("items"):
            results.insert(0, _find(document, own, parts))
        for status in (OK, FREE, TRIMMED):
            for result in results:
                if result[0] == status:
                    return result
        return MISSING, None
    head, rest = parts[0], parts[1:]
    if schema.get("type") == "array" or "items" in schema:
        return _find(document, schema.get("items") or {}, rest) if head.isdigit() else (MISSING, None)
    properties = schema.get("properties") or {}
    if head in properties:
        return _find(document, properties[head], rest)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and extra:
        return _find(document, extra, rest)
    if not properties and extra is not False and schema.get("type") in (None, "object"):
        return FREE, None
    return MISSING, None


def _path(value: str) -> list[str]:
    return value.split(".") if value else []


def _answer_problems(operation: Operation, request: Listing) -> list[str]:
    """The catalogue's paths, looked for in the operation's 2xx answer."""
    found = operation.answer()
    if found is None:
        return [f"{operation} has no 2xx answer"]
    status, response = found
    schema = _json_schema(operation.document, response)
    answer = f"the {status} answer of {operation}"
    problems: list[str] = []

    def need(kind: str, value: str, below: Any, at: str) -> Any:
        if below is None:
            return None
        result, schema_at = _find(operation.document, below, _path(value))
        if result == MISSING:
            problems.append(f"{kind} path {value!r} is not in {answer}{at}")
        elif result == TRIMMED:
            problems.append(f"{kind} path {value!r} reaches schema {schema_at!r}, which the trimmed "
                            f"{operation.document.name} cut off: keep it")
        return schema_at if result == OK else {}

    if schema is None:
        return [f"{answer} has no JSON schema"]
    listed = need("items", request.items, schema, "")
    element = {}
    if listed is not None:
        listed = operation.document.resolve(listed)
        if listed == {}:
            element = {}
        elif listed.get("type") == "array" or "items" in listed:
            element = listed.get("items") or {}
        else:
            problems.append(f"items path {request.items or '(the answer)'!r} is not a list in {answer}")
            element = None
    where_item = " (in an item)"
    need("record", request.record, element, where_item)
    need("id", request.id, element, where_item)
    if request.updated_at:
        need("updated_at", request.updated_at, element, where_item)
    if request.deleted_when:
        need("deleted_when", request.deleted_when["path"], element, where_item)
    paging = request.next
    if value := paging.get("value"):
        if value.startswith("last."):
            need("next.value", value.removeprefix("last."), element, where_item)
        else:
            need("next.value", value, schema, "")
    if flag := paging.get("while"):
        need("next.while", flag, schema, "")
    if url := paging.get("url"):
        if url.startswith("header:"):
            header = url.removeprefix("header:").lower()
            headers = {h.lower() for h in (response.get("headers") or {})}
            if header not in headers:
                problems.append(f"next.url header {header!r} is not among the headers of {answer}")
        else:
            need("next.url", url, schema, "")
    return problems


def _write_answer_problems(collection: Collection, where: str, operation: Operation) -> list[str]:
    """A write's answer holds what the write spec reads from it: the created id, the id and change
    time of an updated or fetched record (when the answer is the record)."""
    write = collection.write
    name = where.removeprefix("write.")
    if write is None or name == "delete":
        return []
    if name == "update" and write.fetch is not None or name == "create" and write.fetch is not None and not write.created_id:
        return []
    schema = operation.answer_schema()
    if schema is None:
        return [f"the answer of {operation} has no JSON schema"]
    # The record is at `write.record` in the answer (Zendesk's `ticket`, Asana's `data`), its id and
    # change time in it; a create read back (`fetch`) names its new id in the answer itself.
    within = [] if name == "create" and write.fetch is not None else _path(write.record) if write.record else []
    wanted = [("id", write.created_id or write.id)] if name == "create" else [("id", write.id)]
    if write.updated_at and name != "create":
        wanted.append(("updated_at", write.updated_at))
    problems = []
    for kind, value in wanted:
        status, at = _find(operation.document, schema, [*within, *_path(value)])
        if status in (MISSING, TRIMMED):
            problems.append(f"{kind} path {value!r} is not in the answer of {operation}")
    return problems


# --- GraphQL ----------------------------------------------------------------------------------

def _graphql_problems(schema: GraphQLSchema, request: Listing | WriteRequest, collection: Collection | None = None,
                      where: str = "") -> list[str]:
    """A GraphQL listing's or write's query parses and is valid against the schema, and selects
    what the catalogue reads from its answer."""
    from graphql import GraphQLError, parse, validate

    try:
        document = parse(request.body["query"])
    except GraphQLError as error:
        return [f"the query does not parse: {error.message}"]
    errors = validate(schema.schema, document)
    if errors:
        return [f"the query is not valid against {schema.name}: {errors[0].message}"]
    root = _selections(document)
    if isinstance(request, WriteRequest):
        return _graphql_write_problems(root, collection, where)
    return _graphql_listing_problems(root, request)


def _graphql_write_problems(root: dict[str, Any], collection: Collection | None, where: str) -> list[str]:
    """A write's mutation selects the record (`write.record`) and, in it, the id the write reads."""
    write = collection.write if collection else None
    if write is None or where == "write.delete":
        return []
    record = _selected(root, _path(write.record)) if write.record else root
    if record is None:
        return [f"record path {write.record!r} is not selected by the mutation"]
    wanted = write.created_id or write.id if where == "write.create" else write.id
    if _selected(record, _path(wanted)) is None:
        return [f"id path {wanted!r} is not selected by the mutation"]
    return []


def _graphql_listing_problems(root: dict[str, Any], listing: Listing) -> list[str]:
    problems = []
    items = _selected(root, _path(listing.items))
    if items is None:
        problems.append(f"items path {listing.items!r} is not selected by the query")
    for kind, value, base in [("id", listing.id, items), ("updated_at", listing.updated_at, items),
                              ("record", listing.record, items),
                              ("next.value", listing.next.get("value", ""), root),
                              ("next.while", listing.next.get("while", ""), root)]:
        if not value or base is None:
            continue
        if kind == "next.value" and value.startswith("last."):
            value, base = value.removeprefix("last."), items
        if _selected(base, _path(value)) is None:
            problems.append(f"{kind} path {value!r} is not selected by the query")
    return problems


def _selections(document) -> dict[str, Any]:
    """The query's answer shape: {"data": {alias or field: {...}}} (a leaf is {})."""
    from graphql import FieldNode, OperationDefinitionNode

    def shape(selection_set) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for node in selection_set.selections if selection_set else ():
            if isinstance(node, FieldNode):
                key = (node.alias or node.name).value
                found[key] = shape(node.selection_set)
            elif getattr(node, "selection_set", None):  # an inline fragment
                found.update(shape(node.selection_set))
        return found

    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    return {"data": shape(operations[0].selection_set)} if operations else {}


def _selected(shape: dict[str, Any] | None, parts: list[str]) -> dict[str, Any] | None:
    for part in parts:
        if shape is None:
            return None
        if part.isdigit():
            continue  # a list index: the same selection
        shape = shape.get(part)
    return shape


# --- fields -----------------------------------------------------------------------------------

def _type_name(document: OpenAPIDocument, schema: Any) -> str:
    schema = document.resolve(schema)
    if not isinstance(schema, dict):
        return ""
    if "x-headwater-trimmed" in schema:
        return "object"
    if schema.get("type"):
        return str(schema["type"])
    kinds = [_type_name(document, sub) for key in ("allOf", "oneOf", "anyOf") for sub in schema.get(key) or []]
    kinds = list(dict.fromkeys(k for k in kinds if k))
    return "|".join(kinds) if kinds else ("object" if "properties" in schema else "")


def _properties(document: OpenAPIDocument, schema: Any) -> dict[str, Any]:
    """The properties a record schema declares (allOf merged; anyOf/oneOf: the first with some)."""
    schema = document.resolve(schema)
    if not isinstance(schema, dict):
        return {}
    found = dict(schema.get("properties") or {})
    for sub in schema.get("allOf") or []:
        found.update(_properties(document, sub))
    for key in ("oneOf", "anyOf"):
        for sub in schema.get(key) or []:
            if not found and (props := _properties(document, sub)):
                found = props
    return found


def _field(document: OpenAPIDocument, name: str, schema: Any) -> dict[str, str]:
    resolved = document.resolve(schema)
    described = {"name": name, "type": _type_name(document, resolved)}
    description = (schema.get("description") if isinstance(schema, dict) else None) or resolved.get("description")
    if description:
        described["description"] = " ".join(str(description).split())
    return described


def collection_fields(catalogue: ProviderCatalogue, collection: Collection,
                      descriptions: Descriptions) -> list[dict[str, str]]:
    """The fields of a collection's records as its provider's description defines them (none
    when it defines none, or Headwater neither reads nor fetches the collection)."""
    provider = catalogue.provider(collection.provider)
    documents = descriptions.documents(provider.key, OpenAPIDocument)
    sources: list[tuple[Listing | WriteRequest, str]] = []
    if collection.read and not is_graphql(collection.read.list):
        sources.append((collection.read.list, "list"))
    if collection.read and is_graphql(collection.read.list):
        return _graphql_fields(descriptions, provider, collection.read.list)
    if collection.write:
        sources += [(r, "record") for r in (collection.write.fetch, collection.write.create) if r]
    for request, kind in sources:
        for document in documents:
            operation = document.find(request.method, _full_path(provider, request.path))
            if operation is None or (schema := operation.answer_schema()) is None:
                continue
            record: Any = schema
            if kind == "list":
                status, listed = _find(document, schema, _path(request.items))
                listed = document.resolve(listed) if status == OK else {}
                status, record = _find(document, listed.get("items") or {}, _path(request.record))
                if status != OK:
                    continue
            properties = _properties(document, record)
            if properties:
                return [_field(document, name, value) for name, value in properties.items()]
    return []


def _graphql_fields(descriptions: Descriptions, provider: Provider, listing: Listing) -> list[dict[str, str]]:
    from graphql import get_named_type, is_list_type, is_non_null_type, is_object_type, parse

    schemas = descriptions.documents(provider.key, GraphQLSchema)
    if not schemas:
        return []
    schema = schemas[0].schema
    shape = _selections(parse(listing.body["query"]))
    # walk the schema along the items path: data.<field>.<field>... to the node type
    node_type: Any = schema.query_type
    for part in _path(listing.items)[1:]:
        if part.isdigit():
            continue
        named = get_named_type(node_type)
        if not is_object_type(named) or part not in named.fields:
            return []
        node_type = named.fields[part].type
    named = get_named_type(node_type)
    selected = _selected(shape, _path(listing.items)) or {}
    if not is_object_type(named):
        return []

    def type_name(graphql_type) -> str:
        while is_non_null_type(graphql_type):
            graphql_type = graphql_type.of_type
        return f"[{type_name(graphql_type.of_type)}]" if is_list_type(graphql_type) else graphql_type.name

    fields = []
    for name in selected:
        if name in named.fields:
            definition = named.fields[name]
            described = {"name": name, "type": type_name(definition.type)}
            if definition.description:
                described["description"] = " ".join(definition.description.split())
            fields.append(described)
    return fields


def all_fields(catalogue: ProviderCatalogue, descriptions: Descriptions) -> dict[str, list[dict[str, str]]]:
    return {
        collection.id: fields
        for provider in catalogue.providers.values()
        for collection in provider.collections.values()
        if (fields := collection_fields(catalogue, collection, descriptions))
    }


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit("usage: python -m headwater.upstream.descriptions DESCRIPTIONS_DIR OUT.json")
    fields = all_fields(ProviderCatalogue.default(), Descriptions.load(argv[0]))
    Path(argv[1]).write_text(json.dumps(fields, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
