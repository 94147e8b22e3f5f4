"""ProviderService: the catalogue described, for applications that build on it.

    GET /v1/providers                     every provider
    GET /v1/providers/shopify             one: its credential kinds (secrets marked), collections
                                          and what each can do, default pace, the account facts
                                          it needs, OAuth
    GET /v1/collections/stripe:customer   one collection: what it can do and its records' fields

The answers are the catalogue's (headwater.upstream.catalogue), the same for every organisation;
any organisation's token may read them. Built once: the catalogue does not change while serving.
A collection's fields are those its provider's API description defines, read from
collection_fields.json, which `make gen` writes from tests/upstream-specs
(headwater.upstream.descriptions).
"""

from __future__ import annotations

import json
from importlib import resources

from headwater.errors import not_found
from headwater.services._common import Backend
from headwater.upstream.catalogue import Collection, CredentialKind, Provider, ProviderCatalogue
from headwater.v1 import provider_pb2, provider_pb2_grpc


def kind_info(kind: CredentialKind) -> provider_pb2.CredentialKindInfo:
    auth = kind.auth
    return provider_pb2.CredentialKindInfo(
        kind=kind.name,
        required=[provider_pb2.CredentialProperty(name=name, secret=name in kind.secret) for name in kind.required],
        secret=sorted(kind.secret),
        auth=auth["type"],
        auth_name=auth.get("name", ""),
        verified=kind.verification is not None,
        base_url_property=kind.base_url_property or "",
    )


def collection_info(collection: Collection) -> provider_pb2.CollectionInfo:
    return provider_pb2.CollectionInfo(
        id=collection.id, name=collection.name,
        capabilities=provider_pb2.CollectionCapabilities(**collection.capabilities),
    )


def collection_fields() -> dict[str, list[dict[str, str]]]:
    """{collection id: [{name, type, description}]} as `make gen` wrote them."""
    return json.loads(resources.files("headwater.upstream").joinpath("collection_fields.json").read_text())


def collection_described(collection: Collection, fields: list[dict[str, str]]) -> provider_pb2.Collection:
    return provider_pb2.Collection(
        id=collection.id, name=collection.name, provider=collection.provider,
        capabilities=provider_pb2.CollectionCapabilities(**collection.capabilities),
        fields=[provider_pb2.CollectionField(**field) for field in fields],
    )


def provider_info(provider: Provider) -> provider_pb2.Provider:
    """What discovery says of `provider`."""
    pace = provider.default_rate_limit
    own = [kind.base_url_property for kind in provider.credential_kinds.values() if kind.base_url_property]
    learned = sorted(provider.oauth.fact_properties) if provider.oauth else []
    oauth = provider.oauth
    return provider_pb2.Provider(
        provider=provider.key,
        name=provider.name,
        base_url=provider.base_url,
        permitted_hosts=provider.permitted_hosts,
        credential_kinds=[kind_info(kind) for kind in provider.credential_kinds.values()],
        collections=[collection_info(c) for c in provider.collections.values()],
        default_rate_limits=[provider_pb2.RateLimitWindow(
            allowed_requests=pace.allowed_requests, interval_seconds=pace.interval,
            max_concurrent_requests=pace.max_concurrent_requests,
        )],
        account_facts=provider_pb2.AccountFacts(
            needed=bool(provider.account_facts), template_properties=provider.template_properties,
            base_url_properties=sorted(set(own)), account_properties=learned,
        ),
        oauth=provider_pb2.OAuthInfo(
            credential_kind=oauth.credential_kind, authorization_url=oauth.authorization_url,
            token_url=oauth.token_url, default_scopes=oauth.default_scopes,
            scope_separator=oauth.scope_separator, pkce=oauth.pkce,
        ) if oauth else None,
    )


class ProviderServicer(provider_pb2_grpc.ProviderServiceServicer):
    def __init__(self, backend: Backend):
        self.backend = backend
        catalogue: ProviderCatalogue = backend.catalogue
        self._described = {key: provider_info(provider) for key, provider in catalogue.providers.items()}
        fields = collection_fields()
        self._collections = {
            collection.id: collection_described(collection, fields.get(collection.id, []))
            for provider in catalogue.providers.values() for collection in provider.collections.values()
        }

    async def ListProviders(self, request, context):
        await self.backend.auth.org_id(context)
        return provider_pb2.ListProvidersResponse(data=list(self._described.values()))

    async def _one(self, context, kind: str, described: dict, key: str):
        """`described[key]` for any organisation's token; NOT_FOUND naming it when there is none."""
        await self.backend.auth.org_id(context)
        if (found := described.get(key)) is None:
            raise not_found(kind, key)
        return found

    async def GetProvider(self, request, context):
        provider = await self._one(context, "provider", self._described, request.provider)
        return provider_pb2.GetProviderResponse(provider=provider)

    async def GetCollection(self, request, context):
        collection = await self._one(context, "collection", self._collections, request.collection_id)
        return provider_pb2.GetCollectionResponse(collection=collection)
