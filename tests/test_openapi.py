"""The OpenAPI document: what `make gen` commits is what the server serves at /openapi.json, it is
valid OpenAPI 3.1, it says what the bridge does (names, required fields, well-known types, errors,
auth, the raw routes), and schemathesis, run against a real server from it, finds no answer of the
server's that the document does not describe."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate

from headwater.rest import build_app
from headwater.rest.openapi import RAW_METHODS, document, render
from headwater.v1 import stream_pb2, sync_pb2

GENERATED = Path(__file__).resolve().parent.parent / "gen" / "openapi.json"


@pytest.fixture(scope="module")
def doc() -> dict:
    return json.loads(GENERATED.read_bytes())


def schema_of(doc: dict, ref_or_schema: dict) -> dict:
    """The component a {"$ref": ...} names (or the schema itself)."""
    ref = ref_or_schema.get("$ref")
    return doc["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else ref_or_schema


def resolving(doc: dict, schema: dict) -> dict:
    """`schema` with the document's components beside it, for jsonschema to follow the $refs."""
    return {**schema, "components": doc["components"]}


def test_the_committed_document_is_valid_openapi_3_1(doc):
    validate(doc)
    assert doc["openapi"] == "3.1.0"


async def test_the_server_serves_the_committed_document_without_a_token(server):
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        answer = await http.get("/openapi.json")
        wrong_verb = await http.post("/openapi.json")

    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    # The running server's route table and gen/ agree byte for byte (else: `make gen`).
    assert answer.content == GENERATED.read_bytes()
    assert wrong_verb.status_code == 405
    assert wrong_verb.headers["allow"] == "GET"


def test_the_document_follows_the_route_table_it_is_given():
    # Any service the bridge routes is documented, and nothing it does not route.
    bridge = build_app([(stream_pb2.DESCRIPTOR.services_by_name["StreamService"], None)])

    doc = document(bridge.routes)

    assert sorted(doc["paths"]) == ["/openapi.json", "/v1/streams", "/v1/streams/{id}"]
    assert sorted(doc["paths"]["/v1/streams/{id}"]) == ["delete", "get", "patch"]
    assert doc["paths"]["/v1/streams"]["post"]["operationId"] == "StreamService_CreateStream"
    assert render(doc) == render(document(bridge.routes))  # deterministic


def test_bodies_use_the_proto_field_names_and_required_fields_from_field_behavior(doc):
    create = doc["paths"]["/v1/syncs"]["post"]
    sent = schema_of(doc, create["requestBody"]["content"]["application/json"]["schema"])
    answered = schema_of(doc, create["responses"]["200"]["content"]["application/json"]["schema"])

    # REQUIRED in sync.proto; OUTPUT_ONLY fields are read-only in what is sent.
    assert sent["required"] == ["provider", "stream_id", "collection_ids"]
    assert sent["properties"]["id"]["readOnly"] is True
    assert "rate_limit" in sent["properties"] and "rateLimit" not in sent["properties"]
    assert sent["additionalProperties"] is False  # the bridge refuses unknown fields
    # null is "unset" for a field that is not required; a required one must be given.
    assert sent["properties"]["name"] == {"anyOf": [{"type": "string", "maxLength": 255}, {"type": "null"}]}
    assert sent["properties"]["provider"] == {"type": "string", "maxLength": 255}
    # The answer has every key; what has presence (messages, `optional` scalars) may be null.
    assert answered["required"] == [f.name for f in sync_pb2.Sync.DESCRIPTOR.fields]
    assert answered["properties"]["name"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert answered["properties"]["created_at"] == {
        "anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]}
    assert answered["properties"]["metadata"] == {"anyOf": [{"type": "object"}, {"type": "null"}]}
    assert answered["properties"]["collection_ids"] == {"type": "array", "items": {"type": "string"}}


def test_a_patch_body_requires_nothing_and_the_update_mask_is_a_query_parameter(doc):
    patch = doc["paths"]["/v1/syncs/{id}"]["patch"]

    body = schema_of(doc, patch["requestBody"]["content"]["application/json"]["schema"])
    parameters = {p["name"]: p for p in patch["parameters"]}

    assert "required" not in body
    assert parameters["id"]["in"] == "path" and parameters["id"]["schema"]["minLength"] == 1
    assert parameters["update_mask"]["in"] == "query"
    assert parameters["update_mask"]["schema"]["type"] == "string"


def test_fields_bound_by_neither_path_nor_body_are_query_parameters(doc):
    listing = {p["name"]: p for p in doc["paths"]["/v1/syncs"]["get"]["parameters"]}
    next_batch = doc["paths"]["/v1/http-consumers/{id}/next"]
    posted = schema_of(doc, next_batch["post"]["requestBody"]["content"]["application/json"]["schema"])

    assert listing["page_size"]["schema"]["type"] == "integer"
    assert listing["health.status"]["in"] == "query"  # a nested message's field, by its path
    assert {p["name"] for p in next_batch["get"]["parameters"]} == {"id", "batch_size", "wait_for"}
    # body "*": the whole message but the path's fields, and no query parameters.
    assert sorted(posted["properties"]) == ["batch_size", "wait_for"]
    assert [p["name"] for p in next_batch["post"]["parameters"]] == ["id"]


def test_errors_are_the_documented_body_and_validate_against_it(doc):
    statuses = sorted(doc["paths"]["/v1/syncs"]["post"]["responses"])
    error_schema = doc["components"]["schemas"]["Error"]
    from headwater.errors import invalid

    real_error = invalid("sync.provider", "is required").to_json()

    assert statuses == ["200", "400", "401", "403", "404", "409", "413", "415", "429", "503", "504"]
    assert "413" not in doc["paths"]["/v1/syncs"]["get"]["responses"]  # no body, no body errors
    assert doc["components"]["responses"]["Error400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
    jsonschema.validate(real_error, error_schema)
    assert error_schema["required"] == ["error", "docs", "code", "message", "details"]


def test_the_token_is_a_bearer_scheme_that_the_document_and_the_connect_pages_do_not_need(doc):
    assert doc["security"] == [{"bearer": []}]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "token <token>" in doc["components"]["securitySchemes"]["bearer"]["description"]
    assert doc["paths"]["/openapi.json"]["get"]["security"] == []
    assert doc["paths"]["/v1/connect/pages/{session_id}"]["get"]["security"] == []
    assert "security" not in doc["paths"]["/v1/syncs"]["get"]  # the document's default: a token


def test_proxy_routes_are_raw_pass_through_on_every_verb(doc):
    proxy = doc["paths"]["/v1/proxy/sync/{sync_id}/{path}"]

    assert sorted(proxy) == sorted(RAW_METHODS)
    for verb, operation in proxy.items():
        assert operation["responses"] == {"default": {
            "description": operation["responses"]["default"]["description"],
            "content": {"*/*": {"schema": {}}},  # any status, any body
        }}
        assert "security" not in operation  # the caller's token
    assert proxy["post"]["requestBody"]["content"] == {"*/*": {"schema": {}}}
    path_parameter = next(p for p in proxy["get"]["parameters"] if p["name"] == "path")
    assert "several segments" in path_parameter["description"]


def test_a_create_links_to_the_operations_on_what_it_created(doc):
    links = doc["paths"]["/v1/http-consumers"]["post"]["responses"]["200"]["links"]

    assert links["ConsumerService_Ack"] == {
        "operationId": "ConsumerService_Ack", "parameters": {"id": "$response.body#/id"}}
    assert "ConsumerService_GetConsumer" in links


async def test_real_answers_match_the_document(server, client, doc):
    # Arrange one of each kind of answer: a resource, a list of them, an error.
    created = await client.rest.post("/v1/streams", json={"name": "orders"})
    listed = await client.rest.get("/v1/streams")
    missing = await client.rest.get("/v1/streams/nope")

    def answer_schema(path: str, verb: str, status: str) -> dict:
        response = doc["paths"][path][verb]["responses"][status]
        if "$ref" in response:
            response = doc["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
        return response["content"]["application/json"]["schema"]

    assert created.status_code == 200, created.text
    jsonschema.validate(created.json(), resolving(doc, answer_schema("/v1/streams", "post", "200")))
    jsonschema.validate(listed.json(), resolving(doc, answer_schema("/v1/streams", "get", "200")))
    assert missing.status_code == 404
    jsonschema.validate(missing.json(), resolving(doc, answer_schema("/v1/streams/{id}", "get", "404")))


# --- schemathesis --------------------------------------------------------------------------

# The checks: no 5xx, documented statuses only, answers of the documented content type, schema
# and headers, a request the document calls invalid refused, and (stateful, following the
# document's links) a deleted resource gone and a created one there.
CHECKS = ",".join([
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_schema_conformance", "response_headers_conformance", "negative_data_rejection",
    "use_after_free", "ensure_resource_availability",
])
EXAMPLES = int(os.environ.get("HEADWATER_SCHEMATHESIS_EXAMPLES", "8"))  # per operation and phase

# The raw routes answer what the upstream (or the connect page, or the console) answers: their response schemas
# are not checked (the document says "anything" for them anyway), their statuses and no-5xx are.
RAW_ROUTES = """
[[operations]]
include-tag = "Raw routes"
checks.response_schema_conformance.enabled = false

[[operations]]
include-tag = "Connect pages"
checks.response_schema_conformance.enabled = false

[[operations]]
include-tag = "Console"
checks.response_schema_conformance.enabled = false
"""


async def existing_resources(client, upstream) -> dict[str, str]:
    """One of each resource, by the path prefix of the calls on it: {"/v1/syncs/": id, ...}; the
    credential's API is the upstream emulator on loopback (the proxy's calls go there)."""

    async def create(path: str, body: dict) -> str:
        answer = await client.rest.post(path, json=body)
        assert answer.status_code == 200, answer.text
        return answer.json()["id"]

    stream = await create("/v1/streams", {"name": "schemathesis"})
    credential = await create("/v1/credentials", {"provider": "stripe", "properties": {
        "kind": "stripe_api_key", "secret": "sk_test_schemathesis", "base_url": upstream.base_url}})
    sync = await create("/v1/syncs", {
        "provider": "stripe", "stream_id": stream, "credential_id": credential, "collection_ids": ["stripe:customer"]})
    consumer = await create("/v1/http-consumers", {"name": "schemathesis", "stream_id": stream})
    endpoint = await create("/v1/event-endpoints", {"url": "https://example.com/schemathesis"})
    return {"/v1/streams/": stream, "/v1/credentials/": credential, "/v1/syncs/": sync,
            "/v1/http-consumers/": consumer, "/v1/event-endpoints/": endpoint}


async def schemathesis(server, token: str, config: Path, phases: str) -> str:
    """Runs schemathesis against the server's /openapi.json, which must pass: its report."""
    command = [
        sys.executable, "-c", "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())",
        "--config-file", str(config), "--no-color",
        "run", f"{server.http_url}/openapi.json",
        "-H", f"Authorization: Bearer {token}",
        "--checks", CHECKS,
        "--phases", phases,
        "--max-examples", str(EXAMPLES),
        "--seed", "15",  # the same cases every run
        "--generation-database", "none",
        "--workers", "1",
        "--request-timeout", "20",
    ]
    process = await asyncio.create_subprocess_exec(
        *command, cwd=config.parent, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    report = output.decode(errors="replace")
    assert process.returncode == 0, report[-20000:]
    return report


# On SQLite only, to keep the run near a minute on a 2-core machine (tests/test_fuzz.py sends
# hostile input to every route on PostgreSQL too).
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_schemathesis_finds_no_answer_the_document_does_not_describe(server, client, upstream, tmp_path):
    # Calls on an existing resource get past the 404 to the answers that show a resource (all but
    # DELETE, which would leave the others a 404).
    ids = await existing_resources(client, upstream)
    on_existing = tmp_path / "existing" / "schemathesis.toml"
    on_existing.parent.mkdir()
    on_existing.write_text(RAW_ROUTES + "".join(
        f'\n[[operations]]\ninclude-path-regex = "^{prefix}"\nexclude-method = "DELETE"\n'
        f'parameters = {{ id = "{ident}" }}\n'
        for prefix, ident in ids.items()
    ))
    # The stateful phase follows the document's links from each create to what it created (there
    # the ids above would take the place of the created one's).
    following_links = tmp_path / "links" / "schemathesis.toml"
    following_links.parent.mkdir()
    # The console's pages answer a redirect to its sign-in form without a session cookie: links
    # through them lead nowhere, and would take the phase's examples (tests/test_console.py covers them).
    following_links.write_text(RAW_ROUTES + '\n[[operations]]\ninclude-tag = "Console"\nenabled = false\n')

    fuzzed = await schemathesis(server, client.token, on_existing, "examples,coverage,fuzzing")
    followed = await schemathesis(server, client.token, following_links, "stateful")

    selected = re.search(r"Selected: (\d+)/(\d+)", fuzzed)
    assert selected and selected.group(1) == selected.group(2), fuzzed[-5000:]  # every operation
    assert f"Tested: {selected.group(1)}" in fuzzed, fuzzed[-5000:]
    assert re.search(r"API Links: +[1-9]\d* covered", followed), followed[-5000:]


def a_service_of_every_field_type():
    """A service the protos do not have (yet): 64-bit integers, an enum, wrappers, a Duration, a
    map, a REQUIRED field; to show the generator takes whatever the bridge routes."""
    from google.api import annotations_pb2, field_behavior_pb2
    from google.protobuf import descriptor_pb2, descriptor_pool
    from google.protobuf import duration_pb2, wrappers_pb2  # noqa: F401 (their files, in the pool)

    name = "openapi_test/things.proto"
    pool = descriptor_pool.Default()
    try:
        return pool.FindFileByName(name).services_by_name["ThingService"]
    except KeyError:
        pass
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name=name, package="openapi_test", syntax="proto3",
        dependency=["google/api/annotations.proto", "google/api/field_behavior.proto",
                    "google/protobuf/duration.proto", "google/protobuf/wrappers.proto"])
    file.enum_type.add(name="Colour").value.extend([
        descriptor_pb2.EnumValueDescriptorProto(name="COLOUR_UNSPECIFIED", number=0),
        descriptor_pb2.EnumValueDescriptorProto(name="RED", number=1)])
    thing = file.message_type.add(name="Thing")
    thing.field.add(name="id", number=1, type=F.TYPE_STRING)
    thing.field.add(name="count", number=2, type=F.TYPE_INT64)
    thing.field.add(name="colour", number=3, type=F.TYPE_ENUM, type_name=".openapi_test.Colour")
    thing.field.add(name="limit", number=4, type=F.TYPE_MESSAGE, type_name=".google.protobuf.Int32Value")
    thing.field.add(name="every", number=5, type=F.TYPE_MESSAGE, type_name=".google.protobuf.Duration")
    label = thing.field.add(name="label", number=6, type=F.TYPE_STRING)
    label.options.Extensions[field_behavior_pb2.field_behavior].append(field_behavior_pb2.REQUIRED)
    entry = thing.nested_type.add(name="SizesEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_UINT64, label=F.LABEL_OPTIONAL)
    thing.field.add(name="sizes", number=7, type=F.TYPE_MESSAGE, type_name=".openapi_test.Thing.SizesEntry",
                    label=F.LABEL_REPEATED)
    request = file.message_type.add(name="PutThingRequest")
    request.field.add(name="id", number=1, type=F.TYPE_STRING)
    request.field.add(name="thing", number=2, type=F.TYPE_MESSAGE, type_name=".openapi_test.Thing")
    request.field.add(name="dry_run", number=3, type=F.TYPE_BOOL)
    method = file.service.add(name="ThingService").method.add(
        name="PutThing", input_type=".openapi_test.PutThingRequest", output_type=".openapi_test.Thing")
    rule = method.options.Extensions[annotations_pb2.http]
    rule.put = "/v1/things/{id}"
    rule.body = "thing"
    pool.AddSerializedFile(file.SerializeToString())
    return pool.FindFileByName(name).services_by_name["ThingService"]


def test_the_generator_maps_every_field_type_as_protobufs_json_mapping_says():
    bridge = build_app([(a_service_of_every_field_type(), None)])

    doc = document(bridge.routes)
    validate(doc)
    put = doc["paths"]["/v1/things/{id}"]["put"]
    sent = doc["components"]["schemas"]["openapi_test.ThingInput"]
    answered = doc["components"]["schemas"]["openapi_test.Thing"]

    assert put["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/openapi_test.ThingInput"}
    assert [p["name"] for p in put["parameters"]] == ["id", "dry_run"]
    assert sent["required"] == ["label"]
    # 64-bit integers: strings out, strings or numbers in.
    assert answered["properties"]["count"]["type"] == "string"
    assert {s["type"] for s in sent["properties"]["count"]["anyOf"][0]["oneOf"]} == {"string", "integer"}
    assert answered["properties"]["colour"] == {"type": "string", "enum": ["COLOUR_UNSPECIFIED", "RED"]}
    # A wrapper is its value, null when unset; a Duration is "1.5s".
    assert answered["properties"]["limit"]["anyOf"][0]["type"] == "integer"
    assert answered["properties"]["limit"]["anyOf"][1] == {"type": "null"}
    assert answered["properties"]["every"]["anyOf"][0]["pattern"].endswith("s$")
    assert answered["properties"]["sizes"] == {
        "type": "object", "additionalProperties": {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"}}
