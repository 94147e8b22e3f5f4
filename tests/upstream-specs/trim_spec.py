"""Cut a provider's OpenAPI document down to the operations Headwater uses.

    python tests/upstream-specs/trim_spec.py SRC DST --op "GET /v1/customers" --op "POST /v1/customers" \
        [--keep customer,invoice] [--bodies] [--source "stripe/openapi openapi/spec3.json@COMMIT (DATE)"]

Keeps `openapi`, `info`, `servers`, `components.securitySchemes`, the named operations (with their
path item's parameters) and every component they refer to. With `--keep`, a reference to a schema
not named there becomes `{"type": "object", "x-headwater-trimmed": NAME}` (its description
kept; the conformance checks refuse to look into it), so a record's own fields stay
and the objects it links to are cut off. Dropped everywhere: examples, Stripe's
`x-expansionResources`, and, unless `--bodies`, request body schemas (reduced to their media
types and marked trimmed). `example: null` is dropped and a `*/*` media type read as JSON (for Prism).
The source goes into `info.x-headwater-source`.
"""

from __future__ import annotations

import argparse
import json

DROPPED_KEYS = {"examples", "example", "x-expansionResources"}


def load(path: str):
    if path.endswith((".yaml", ".yml")):
        import yaml

        with open(path) as f:
            return yaml.safe_load(f)
    with open(path) as f:
        return json.load(f)


def trim(spec: dict, operations: list[tuple[str, str]], keep: set[str] | None, bodies: bool = False) -> dict:
    components = spec.get("components", {})
    kept: dict[tuple[str, str], object] = {}
    pending: list[tuple[str, str]] = []

    def walk(node):
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/"):
            _, _, kind, name = ref.split("/", 3)
            if kind == "schemas" and keep is not None and name not in keep:
                target = components[kind][name]
                stub = {"type": "object", "x-headwater-trimmed": name}
                if isinstance(target, dict) and target.get("description"):
                    stub["description"] = target["description"]
                return stub
            if (kind, name) not in kept:
                kept[(kind, name)] = None
                pending.append((kind, name))
            return {"$ref": ref}
        out = {}
        for key, value in node.items():
            if key in DROPPED_KEYS:
                continue
            if key == "content" and isinstance(value, dict) and "*/*" in value:
                value = {("application/json" if media == "*/*" else media): v for media, v in value.items()}
            out[key] = walk(value)
        return out

    paths: dict[str, dict] = {}
    for method, path in operations:
        item = spec["paths"][path]
        operation = dict(item[method.lower()])
        if "requestBody" in operation and not bodies:
            body = operation["requestBody"]
            if "$ref" not in body:
                stub = {"type": "object", "x-headwater-trimmed": "request body"}
                body = {**body, "content": {media: {"schema": stub} for media in body.get("content", {})}}
            operation["requestBody"] = body
        target = paths.setdefault(path, {k: walk(v) for k, v in item.items() if k == "parameters"})
        target[method.lower()] = walk(operation)
    done: dict[str, dict] = {}
    while pending:
        kind, name = pending.pop()
        done.setdefault(kind, {})[name] = walk(components[kind][name])
    trimmed = {key: spec[key] for key in ("openapi", "info", "servers") if key in spec}
    trimmed["paths"] = paths
    trimmed["components"] = {kind: dict(sorted(entries.items())) for kind, entries in sorted(done.items())}
    if "securitySchemes" in components:
        trimmed["components"]["securitySchemes"] = components["securitySchemes"]
    return trimmed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--op", action="append", required=True, help='"METHOD /path", as the document spells the path')
    parser.add_argument("--keep", help="schemas kept whole (comma-separated); others referred to become objects")
    parser.add_argument("--bodies", action="store_true", help="keep request body schemas")
    parser.add_argument("--source", help="where SRC came from: repository, path, commit and date")
    args = parser.parse_args()
    operations = [tuple(op.split(" ", 1)) for op in args.op]
    trimmed = trim(load(args.src), operations, set(args.keep.split(",")) if args.keep else None,
                   args.bodies)
    if args.source:
        trimmed["info"] = {**trimmed.get("info", {}), "x-headwater-source": args.source}
    with open(args.dst, "w") as f:
        json.dump(trimmed, f, indent=1, sort_keys=False)
        f.write("\n")
    print(f"{args.dst}: {len(operations)} operations, {sum(map(len, trimmed['components'].values()))} components")


if __name__ == "__main__":
    main()
