"""The provider catalogue: `catalogue.yaml` read into typed, immutable objects.

    catalogue = ProviderCatalogue.default()
    stripe = catalogue.provider("stripe")
    stripe.credential_kinds["stripe_oauth2"].secret    # ("secret", "refresh_token")
    catalogue.collection("stripe:customer").name        # "Customer"
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

# Accepted by every credential kind: where this credential's API calls go instead.
BASE_URL_PROPERTY = "base_url"


@dataclass(frozen=True)
class RateLimitDefault:
    allowed_requests: int
    interval: int
    max_concurrent_requests: int = 0


@dataclass(frozen=True)
class CredentialKind:
    name: str
    required: tuple[str, ...]
    secret: tuple[str, ...]
    auth: dict[str, Any]
    # A property that holds this credential's own base URL (Salesforce's `instance_url`).
    base_url_property: str | None = None


@dataclass(frozen=True)
class Collection:
    id: str  # "stripe:customer"
    provider: str
    key: str  # "customer"
    name: str
    spec: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Provider:
    key: str
    name: str
    base_url: str | None
    permitted_hosts: tuple[str, ...]
    default_rate_limit: RateLimitDefault
    headers: dict[str, str]
    credential_kinds: dict[str, CredentialKind]
    # Where OAuth2 refresh tokens are exchanged (a credential's `token_url` property overrides it).
    oauth_token_url: str | None
    collections: dict[str, Collection]


class ProviderCatalogue:
    def __init__(self, providers: dict[str, Provider]):
        self.providers = providers

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProviderCatalogue:
        providers = {}
        for key, entry in data["providers"].items():
            kinds = {
                kind: CredentialKind(
                    name=kind,
                    required=tuple(spec.get("required", ())),
                    secret=tuple(spec.get("secret", ())),
                    auth=dict(spec.get("auth", {"type": "none"})),
                    base_url_property=spec.get("base_url_property"),
                )
                for kind, spec in entry["credential_kinds"].items()
            }
            collections = {}
            for ckey, spec in (entry.get("collections") or {}).items():
                spec = dict(spec or {})
                collections[ckey] = Collection(
                    id=f"{key}:{ckey}", provider=key, key=ckey, name=spec.pop("name", ckey), spec=spec
                )
            providers[key] = Provider(
                key=key,
                name=entry.get("name", key),
                base_url=entry.get("base_url"),
                permitted_hosts=tuple(entry.get("permitted_hosts", ())),
                default_rate_limit=RateLimitDefault(**entry["default_rate_limit"]),
                headers=dict(entry.get("headers") or {}),
                credential_kinds=kinds,
                oauth_token_url=entry.get("oauth_token_url"),
                collections=collections,
            )
        return cls(providers)

    @classmethod
    @functools.cache
    def default(cls) -> ProviderCatalogue:
        text = resources.files("headwater.upstream").joinpath("catalogue.yaml").read_text()
        return cls.from_dict(yaml.safe_load(text))

    def provider(self, key: str) -> Provider | None:
        return self.providers.get(key)

    def collection(self, collection_id: str) -> Collection | None:
        provider_key, _, key = collection_id.partition(":")
        provider = self.providers.get(provider_key)
        return provider.collections.get(key) if provider else None
