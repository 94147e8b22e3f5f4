"""Every listing and write of the catalogue, held against the provider's own API description
(tests/upstream-specs, see its README): the operation exists, the query parameters we send are
its own, and the paths we read (items, id, change time, paging) are in its answer. A catalogue
typo or a renamed endpoint fails here, naming the entry.

Providers that publish no description are listed in tests/upstream-specs/index.yaml with the
reason, and their entries skip with it; a collection of any other provider fails."""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path

import pytest
import yaml

from headwater.upstream import descriptions as described
from headwater.upstream.catalogue import Listing, ProviderCatalogue, WriteRequest

SPECS = Path(__file__).parent / "upstream-specs"
CATALOGUE = ProviderCatalogue.default()
DESCRIPTIONS = described.Descriptions.load(SPECS)

ENTRIES = [
    (collection.id, where)
    for provider in CATALOGUE.providers.values()
    for collection in provider.collections.values()
    for where, _ in described.entries(collection)
]


@pytest.mark.parametrize(("collection_id", "where"), ENTRIES, ids=[f"{c} {w}" for c, w in ENTRIES])
def test_the_entry_matches_the_providers_description(collection_id, where):
    provider = collection_id.partition(":")[0]
    if provider in DESCRIPTIONS.without_description:
        pytest.skip(f"{collection_id} {where}: no description to check against: {DESCRIPTIONS.without_description[provider]}")

    problems = described.check(CATALOGUE, collection_id, where, DESCRIPTIONS)

    assert [p for p in problems if p not in DESCRIPTIONS.accepted] == []


def test_every_accepted_problem_is_still_there():
    reported = {
        problem
        for collection_id, where in ENTRIES
        if collection_id.partition(":")[0] not in DESCRIPTIONS.without_description
        for problem in described.check(CATALOGUE, collection_id, where, DESCRIPTIONS)
    }

    assert sorted(set(DESCRIPTIONS.accepted) - reported) == [], (
        "these are no longer reported: take them out of tests/upstream-specs/index.yaml `accepted:`")


def test_every_collection_is_checked_or_listed_as_without_a_description():
    unaccounted = sorted(
        collection.id
        for provider in CATALOGUE.providers.values()
        for collection in provider.collections.values()
        if described.entries(collection)
        and provider.key not in DESCRIPTIONS.described and provider.key not in DESCRIPTIONS.without_description
    )

    assert unaccounted == [], (
        "add the provider's trimmed description to tests/upstream-specs/index.yaml `described:`, "
        "or say under `without_description:` why it has none")


def test_the_index_names_files_that_exist_and_no_provider_twice():
    named = [name for names in DESCRIPTIONS.described.values() for name in names]

    assert [name for name in named if not (SPECS / name).is_file()] == []
    assert set(DESCRIPTIONS.described) & set(DESCRIPTIONS.without_description) == set()


def test_the_fields_discovery_serves_are_those_the_descriptions_define_today():
    served = json.loads(resources.files("headwater.upstream").joinpath("collection_fields.json").read_text())

    assert served == described.all_fields(CATALOGUE, DESCRIPTIONS), (
        "src/headwater/upstream/collection_fields.json is stale: run make gen and commit")


# --- the checks catch what they are for (on altered copies of real entries) -------------------

def _listing(collection_id: str, where: str = "read.list") -> Listing:
    return dict(described.entries(CATALOGUE.collection(collection_id)))[where]


def _check(collection_id: str, where: str, request) -> list[str]:
    return described.check(CATALOGUE, collection_id, where, DESCRIPTIONS, request=request)


def test_a_renamed_path_is_no_operation_of_the_description():
    renamed = dataclasses.replace(_listing("stripe:customer"), path="v1/customerz")

    assert _check("stripe:customer", "read.list", renamed) == [
        "stripe:customer read.list: no operation GET /v1/customerz in stripe-v1-sync.json (base URL https://api.stripe.com)"]


def test_a_write_with_the_wrong_method_is_no_operation():
    wrong = WriteRequest("PUT", "crm/v3/objects/contacts/{id}")

    [problem] = _check("hubspot:contact", "write.update", wrong)

    assert problem.startswith("hubspot:contact write.update: no operation PUT /crm/v3/objects/contacts/{id}")


def test_an_undefined_query_parameter_is_named_with_the_operation():
    listing = _listing("hubspot:contact")
    misspelt = dataclasses.replace(listing, query={**listing.query, "archivd": "true"})

    assert _check("hubspot:contact", "read.list", misspelt) == [
        "hubspot:contact read.list: query parameter 'archivd' is not defined by GET /crm/v3/objects/contacts"]


def test_a_misspelt_github_parameter_is_named_as_the_catalogue_entry_and_the_operation():
    listing = _listing("github:issue")
    query = {("sinse" if key == "since" else key): value for key, value in listing.query.items()}

    assert _check("github:issue", "read.list", dataclasses.replace(listing, query=query)) == [
        "github:issue read.list: query parameter 'sinse' is not defined by GET /repos/{owner}/{repo}/issues"]


def test_a_paging_header_the_answer_does_not_declare_is_named():
    wrong = dataclasses.replace(_listing("github:issue"), next={"url": "header:x-next-page"})

    assert _check("github:issue", "read.list", wrong) == [
        "github:issue read.list: next.url header 'x-next-page' is not among the headers of the 200 answer of "
        "GET /repos/{owner}/{repo}/issues"]


def test_bracketed_query_parameters_need_an_object_or_array_parameter():
    listing = _listing("stripe:customer", "read.changes")
    wrong = dataclasses.replace(listing, query={**listing.query, "created[since]": "1", "type[]": "x"})

    assert _check("stripe:customer", "read.changes", wrong) == [
        "stripe:customer read.changes: query parameter 'created[since]' is not defined by GET /v1/events",
        "stripe:customer read.changes: query parameter 'type[]' is not defined by GET /v1/events",
    ]


def test_a_wrong_items_path_is_not_in_the_answer():
    wrong = dataclasses.replace(_listing("stripe:invoice"), items="invoices")

    problems = _check("stripe:invoice", "read.list", wrong)

    assert problems[0] == "stripe:invoice read.list: items path 'invoices' is not in the 200 answer of GET /v1/invoices"


def test_wrong_id_change_time_and_paging_paths_are_each_named():
    listing = _listing("hubspot:deal", "read.changes")
    wrong = dataclasses.replace(listing, id="dealId", updated_at="lastModified",
                                next={"param": "after", "value": "paging.next.cursor"})

    assert _check("hubspot:deal", "read.changes", wrong) == [
        "hubspot:deal read.changes: id path 'dealId' is not in the 200 answer of POST /crm/v3/objects/deals/search (in an item)",
        "hubspot:deal read.changes: updated_at path 'lastModified' is not in the 200 answer of POST /crm/v3/objects/deals/search (in an item)",
        "hubspot:deal read.changes: next.value path 'paging.next.cursor' is not in the 200 answer of POST /crm/v3/objects/deals/search",
    ]


def test_a_search_body_property_the_operation_does_not_take_is_named():
    listing = _listing("hubspot:company", "read.changes")
    wrong = dataclasses.replace(listing, body={**listing.body, "sort": []})

    assert _check("hubspot:company", "read.changes", wrong) == [
        "hubspot:company read.changes: request body property 'sort' is not defined by POST /crm/v3/objects/companies/search"]


def test_a_path_into_a_schema_the_trimming_cut_off_is_refused_not_accepted():
    # a Stripe customer's `default_source` is a payment source, cut off by the trimmed copy
    wrong = dataclasses.replace(_listing("stripe:customer"), updated_at="default_source.created")

    [problem] = _check("stripe:customer", "read.list", wrong)

    assert "cut off" in problem and "updated_at path 'default_source.created'" in problem


def test_a_write_answer_without_the_id_is_named():
    catalogue = ProviderCatalogue.from_dict(_catalogue_with(
        "hubspot", "contact", write={"create": {"method": "POST", "path": "crm/v3/objects/contacts"}, "id": "vid"}))

    problems = described.check(catalogue, "hubspot:contact", "write.create", DESCRIPTIONS)

    assert problems == ["hubspot:contact write.create: id path 'vid' is not in the answer of POST /crm/v3/objects/contacts"]


def test_a_base_url_on_another_host_or_path_than_the_descriptions_servers_is_named():
    def moved(base_url: str) -> ProviderCatalogue:
        data = _catalogue_with("stripe", "invoice", read={"list": {"path": "v1/invoices", "items": "data"}})
        data["providers"]["stripe"]["base_url"] = base_url
        return ProviderCatalogue.from_dict(data)

    assert described.check(moved("https://api.stripe.co"), "stripe:invoice", "read.list", DESCRIPTIONS) == [
        "stripe:invoice read.list: the base URL's host api.stripe.co is not a server of stripe-v1-sync.json (api.stripe.com)"]
    assert described.check(moved("https://api.stripe.com/api"), "stripe:invoice", "read.list", DESCRIPTIONS) == [
        "stripe:invoice read.list: no operation GET /api/v1/invoices in stripe-v1-sync.json (base URL https://api.stripe.com/api)"]


def _catalogue_with(provider: str, key: str, **collection) -> dict:
    """A one-provider catalogue: `provider`'s entry as catalogue.yaml has it, its collections
    replaced by `key` with `collection`."""
    data = yaml.safe_load(resources.files("headwater.upstream").joinpath("catalogue.yaml").read_text())
    entry = data["providers"][provider]
    entry["collections"] = {key: {"name": key, **collection}}
    return {"providers": {provider: entry}}


# --- GraphQL listings: the query against the provider's published schema ----------------------

LINEAR_ISSUES = """
query Issues($after: String, $since: DateTimeOrDuration) {
  issues(first: 100, after: $after, filter: {updatedAt: {gte: $since}}, orderBy: updatedAt) {
    nodes { id title updatedAt archivedAt }
    pageInfo { hasNextPage endCursor }
  }
}
"""


def _linear(query: str, **listing) -> ProviderCatalogue:
    return ProviderCatalogue.from_dict(_catalogue_with("linear", "issue", read={"list": {
        "method": "POST", "path": "graphql", "body": {"query": query},
        "items": "data.issues.nodes", "updated_at": "updatedAt",
        "next": {"param": "after", "value": "data.issues.pageInfo.endCursor", "while": "data.issues.pageInfo.hasNextPage"},
        **listing}}))


needs_linear_schema = pytest.mark.skipif(
    not (SPECS / "linear-issues-projects-comments.graphql").is_file(), reason="tests/upstream-specs/linear-issues-projects-comments.graphql is absent")


@needs_linear_schema
def test_a_graphql_listing_validates_against_the_providers_schema():
    assert described.check(_linear(LINEAR_ISSUES), "linear:issue", "read.list", DESCRIPTIONS) == []


@needs_linear_schema
def test_a_graphql_query_naming_a_field_the_schema_lacks_is_refused():
    misspelt = LINEAR_ISSUES.replace("updatedAt archivedAt", "updatedAt archivedOn")

    [problem] = described.check(_linear(misspelt), "linear:issue", "read.list", DESCRIPTIONS)

    assert problem.startswith("linear:issue read.list: the query is not valid against linear-issues-projects-comments.graphql: ")
    assert "archivedOn" in problem


@needs_linear_schema
def test_a_graphql_query_that_does_not_parse_is_refused():
    [problem] = described.check(_linear("query { issues("), "linear:issue", "read.list", DESCRIPTIONS)

    assert problem.startswith("linear:issue read.list: the query does not parse: ")


@needs_linear_schema
def test_graphql_paths_must_be_selected_by_the_query():
    catalogue = _linear(LINEAR_ISSUES, items="data.issues.edges", id="identifier")

    assert described.check(catalogue, "linear:issue", "read.list", DESCRIPTIONS) == [
        "linear:issue read.list: items path 'data.issues.edges' is not selected by the query",
    ]


@needs_linear_schema
def test_a_graphql_collections_fields_are_the_selected_fields_typed_by_the_schema():
    catalogue = _linear(LINEAR_ISSUES)

    fields = described.collection_fields(catalogue, catalogue.collection("linear:issue"), DESCRIPTIONS)

    assert [(f["name"], f["type"]) for f in fields] == [
        ("id", "ID"), ("title", "String"), ("updatedAt", "DateTime"), ("archivedAt", "DateTime")]
    assert all(f.get("description") for f in fields)
