"""The provider catalogue: `catalogue.yaml` read into typed, immutable objects.

    catalogue = ProviderCatalogue.default()
    stripe = catalogue.provider("stripe")
    stripe.credential_kinds["stripe_oauth2"].secret    # {"secret", "refresh_token", "client_secret", "access_token"}
    catalogue.collection("stripe:customer").name        # "Customer"
    catalogue.provider("github").oauth.token_url        # "https://github.com/login/oauth/access_token"

The catalogue is checked as it is read: an entry Headwater cannot use raises CatalogueError
naming it, so `headwater serve` fails at start-up rather than on the first call.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import yaml

from headwater.settings import ConfigError
from headwater.upstream.requests import host_permitted

# Accepted by every credential kind: where this credential's API calls go instead.
BASE_URL_PROPERTY = "base_url"
# Secret for every kind: what an OAuth2 refresh sends and writes back (headwater.upstream.oauth).
REFRESH_PROPERTIES = frozenset({"refresh_token", "client_secret", "access_token"})


class CatalogueError(ConfigError):
    """An entry of catalogue.yaml that Headwater cannot use; the message names it."""


@dataclass(frozen=True)
class AuthShape:
    """What an `auth` block of one type gives besides `type` (catalogue.yaml's header says how
    each reaches the upstream)."""

    keys: tuple[str, ...]  # each names a property of the credential
    proof: str | None  # the key whose property is sent as the credential's proof: always secret
    named: bool = False  # also `name` (fixed) or `name_property` (read from the credential)


AUTH_SHAPES = {
    "none": AuthShape((), None),
    "bearer": AuthShape(("property",), "property"),
    "basic": AuthShape(("username", "password"), "password"),
    "header": AuthShape(("property",), "property", named=True),
    "query": AuthShape(("property",), "property", named=True),
}


def check_auth(where: str, auth: Any) -> dict[str, Any]:
    """An `auth` block as the catalogue gives it, refused (CatalogueError) unless well formed."""
    if not isinstance(auth, dict) or auth.get("type") not in AUTH_SHAPES:
        raise CatalogueError(f"{where}: `type` must be one of {', '.join(AUTH_SHAPES)}")
    shape = AUTH_SHAPES[auth["type"]]
    unknown = set(auth) - {"type", *shape.keys, *(("name", "name_property") if shape.named else ())}
    if unknown:
        raise CatalogueError(f"{where}: unknown keys {sorted(unknown)} for type {auth['type']}")
    for key in shape.keys:
        if not isinstance(auth.get(key), str) or not auth[key]:
            raise CatalogueError(f"{where}: give `{key}`, the name of a credential property")
    names = [key for key in ("name", "name_property") if isinstance(auth.get(key), str) and auth[key]]
    if shape.named and len(names) != 1:
        raise CatalogueError(f"{where}: give one of `name` or `name_property`")
    return dict(auth)


def secret_properties(auth: dict[str, Any], extra: Iterable[str] = ()) -> frozenset[str]:
    """What a credential kind keeps secret: the property its auth sends as proof, the OAuth2
    refresh properties, and any `extra` the kind names. Nothing else decides it.

        secret_properties({"type": "query", "name": "key", "property": "api_key"})
        # {"api_key", "refresh_token", "client_secret", "access_token"}
    """
    proof = AUTH_SHAPES[auth["type"]].proof
    return frozenset({*([auth[proof]] if proof else []), *REFRESH_PROPERTIES, *extra})


@dataclass(frozen=True)
class RateWindowDefault:
    allowed_requests: int
    interval: int


@dataclass(frozen=True)
class RateLimitDefault:
    """A provider's default rate limit: the first window, a concurrency cap, and further windows
    (`windows: [{allowed_requests, interval}]`), as a sync's `rate_limit` gives them."""

    allowed_requests: int
    interval: int
    max_concurrent_requests: int = 0
    windows: tuple[RateWindowDefault, ...] = ()

    @classmethod
    def parse(cls, where: str, spec: Any) -> RateLimitDefault:
        keys = {"allowed_requests", "interval", "max_concurrent_requests", "windows"}
        if not isinstance(spec, dict) or set(spec) - keys or not {"allowed_requests", "interval"} <= set(spec):
            raise CatalogueError(f"{where}: give allowed_requests, interval and optionally max_concurrent_requests "
                                 f"and windows: [{{allowed_requests, interval}}]")
        windows = spec.get("windows") or []
        if not isinstance(windows, list) or any(
            not isinstance(w, dict) or set(w) != {"allowed_requests", "interval"} for w in windows
        ):
            raise CatalogueError(f"{where}.windows: give a list of {{allowed_requests, interval}}")
        limit = cls(spec["allowed_requests"], spec["interval"], spec.get("max_concurrent_requests", 0),
                    tuple(RateWindowDefault(w["allowed_requests"], w["interval"]) for w in windows))
        intervals = [limit.interval, *(w.interval for w in limit.windows)]
        if len(set(intervals)) != len(intervals):
            raise CatalogueError(f"{where}.windows: two windows with the same interval")
        return limit


def _get_request(where: str, spec: Any, keys: frozenset[str], give: str) -> str:
    """The path of the GET `spec` declares, refused (CatalogueError) unless it is a mapping of
    `keys` whose method, if given, is GET: `give` says what to give."""
    if not isinstance(spec, dict) or set(spec) - keys:
        unknown = sorted(set(spec) - keys) if isinstance(spec, dict) else spec
        raise CatalogueError(f"{where}: give {give}; unknown keys {unknown}")
    if str(spec.get("method", "GET")).upper() != "GET":
        raise CatalogueError(f"{where}: must be a GET (it must change nothing upstream)")
    if not isinstance(spec.get("path"), str) or not spec["path"]:
        raise CatalogueError(f"{where}: give `path`, relative to the API's base URL")
    return spec["path"]


@dataclass(frozen=True)
class Verification:
    """A cheap authenticated GET that proves a credential works (an API key typed into a form is
    checked with it before it is stored): `path` is relative to the credential's base URL."""

    method: str
    path: str
    query: dict[str, Any] = field(default_factory=dict)
    error_message: str = ""  # where a refusal's JSON holds the provider's message (dotted path)

    KEYS = frozenset({"method", "path", "query", "error_message"})

    @classmethod
    def parse(cls, where: str, spec: Any) -> Verification:
        path = _get_request(where, spec, cls.KEYS, "`path` (and `query`, `error_message`)")
        if not isinstance(spec.get("error_message", ""), str):
            raise CatalogueError(f"{where}.error_message: give a dotted path into the refusal's JSON")
        return cls("GET", path, dict(spec.get("query") or {}), spec.get("error_message", ""))


@dataclass(frozen=True)
class CredentialKind:
    name: str
    required: tuple[str, ...]
    # Encrypted at rest and shown as the mask: `secret_properties` of the auth and the extras.
    secret: frozenset[str]
    auth: dict[str, Any]
    # A property that holds this credential's own base URL (Salesforce's `instance_url`).
    base_url_property: str | None = None
    verification: Verification | None = None

    @classmethod
    def parse(cls, where: str, name: str, spec: dict[str, Any]) -> CredentialKind:
        unknown = set(spec) - {"required", "secret", "auth", "base_url_property", "verification"}
        if unknown:
            raise CatalogueError(f"{where}: unknown keys {sorted(unknown)}")
        for key in ("required", "secret"):
            names = spec.get(key, [])
            if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
                raise CatalogueError(f"{where}.{key}: must be a list of property names")
        auth = check_auth(f"{where}.auth", spec.get("auth", {"type": "none"}))
        secret = secret_properties(auth, spec.get("secret", ()))
        verification = Verification.parse(f"{where}.verification", spec["verification"]) if "verification" in spec else None
        return cls(name, tuple(spec.get("required", ())), secret, auth, spec.get("base_url_property"), verification)


SCOPE_SEPARATORS = (" ", ",")
PLACEHOLDER = re.compile(r"\{(\w+)\}")  # `{property}` in an account request's path or query


def _names_to_strings(where: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and k and isinstance(v, str)
                                              for k, v in value.items()):
        raise CatalogueError(f"{where}: must map names to strings")
    return dict(value)


@dataclass(frozen=True)
class AccountRequest:
    """A GET made right after the code exchange, with the new access token, whose answer tells
    facts of the account that later calls or the application need (an `account_requests` entry of
    an `oauth:` block): `properties` are kept on the credential, each found at a dotted path of
    the JSON answer (a number indexes a list: `0.id`), and must be there unless `optional`.
    `{property}` in `path` or `query` is the credential's property: the access token, a fact of the
    token answer, or one an earlier request kept.

        hub = catalogue.provider("hubspot").oauth.account_requests[0]
        hub.path, hub.properties["hub_id"]      # "oauth/v1/access-tokens/{access_token}", "hub_id"
    """

    path: str  # relative to the credential's base URL, or an https URL on a permitted host
    properties: dict[str, str]  # {property: where the answer holds it}
    query: dict[str, str] = field(default_factory=dict)
    optional: frozenset[str] = frozenset()  # properties the answer may lack
    method: str = "GET"

    KEYS = frozenset({"method", "path", "query", "properties", "optional"})

    @property
    def placeholders(self) -> set[str]:
        return {name for text in (self.path, *self.query.values()) for name in PLACEHOLDER.findall(text)}

    def __str__(self) -> str:
        """How messages name it: "GET oauth/v1/access-tokens/{access_token}" (never a token)."""
        return f"{self.method} {self.path}"

    @classmethod
    def parse(cls, where: str, spec: Any) -> AccountRequest:
        path = _get_request(where, spec, cls.KEYS, "`path` and `properties` (and `query`, `optional`)")
        if "://" in path and not path.startswith("https://"):
            raise CatalogueError(f"{where}.path: a URL must be https://")
        properties = _names_to_strings(f"{where}.properties", spec.get("properties"))
        if not properties:
            raise CatalogueError(f"{where}.properties: name at least one property to keep from the answer")
        optional = spec.get("optional", [])
        if not isinstance(optional, list) or not set(optional) <= set(properties):
            raise CatalogueError(f"{where}.optional: must list some of its `properties`")
        return cls(path, properties, _names_to_strings(f"{where}.query", spec.get("query") or {}), frozenset(optional))

    def check(self, where: str, known: set[str], reserved: Iterable[str], hosts: Iterable[str]) -> None:
        """Refuses a request that uses a property nothing gave before it (`known`), keeps one the
        connection sets itself (`reserved`: the kind, the secrets), or names a host not in `hosts`."""
        if unknown := sorted(self.placeholders - known):
            raise CatalogueError(f"{where}: {', '.join('{' + n + '}' for n in unknown)} names no property known by "
                                 f"then; use one of {sorted(known)}")
        if clashing := sorted(set(self.properties) & set(reserved)):
            raise CatalogueError(f"{where}.properties: {', '.join(clashing)} is set by the connection itself, "
                                 f"not by a fact")
        if self.path.startswith("https://") and not host_permitted(host := urlsplit(self.path).hostname or "", hosts):
            raise CatalogueError(f"{where}.path: {host} is not one of the provider's permitted hosts")


@dataclass(frozen=True)
class OAuthSpec:
    """How a provider runs OAuth2's authorization-code flow (an `oauth:` block of catalogue.yaml).

        oauth = catalogue.provider("slack").oauth
        oauth.scope(["channels:read", "users:read"])   # "channels:read,users:read"
    """

    authorization_url: str
    token_url: str  # where codes and refresh tokens are exchanged for access tokens
    credential_kind: str  # the kind of the credential a connection makes (its auth sends the access token)
    scope_separator: str = " "
    default_scopes: tuple[str, ...] = ()  # asked for when the OAuth app names none
    pkce: bool = False  # the provider checks a PKCE code_challenge (S256)
    authorization_params: dict[str, str] = field(default_factory=dict)  # added to the authorization URL
    # Credential properties to keep from the token answer: {property: dotted path in the answer}.
    account_properties: dict[str, str] = field(default_factory=dict)
    # Asked right after the code exchange, in order, for the facts the token answer lacks.
    account_requests: tuple[AccountRequest, ...] = ()

    @property
    def fact_properties(self) -> frozenset[str]:
        """Every property a connection learns of the account (a new connection replaces them all)."""
        return frozenset({*self.account_properties, *(p for r in self.account_requests for p in r.properties)})

    def scope(self, scopes: Iterable[str]) -> str:
        """The `scope` parameter asking for `scopes`."""
        return self.scope_separator.join(scopes)

    @classmethod
    def parse(cls, where: str, spec: Any) -> OAuthSpec:
        if not isinstance(spec, dict):
            raise CatalogueError(f"{where}: must be a mapping")
        unknown = set(spec) - set(cls.__dataclass_fields__)
        if unknown:
            raise CatalogueError(f"{where}: unknown keys {sorted(unknown)}")
        for key in ("authorization_url", "token_url"):
            if not isinstance(spec.get(key), str) or not spec[key].startswith("https://"):
                raise CatalogueError(f"{where}.{key}: give the provider's https:// URL")
        if not isinstance(spec.get("credential_kind"), str) or not spec["credential_kind"]:
            raise CatalogueError(f"{where}.credential_kind: name the credential kind a connection makes")
        if spec.get("scope_separator", " ") not in SCOPE_SEPARATORS:
            raise CatalogueError(f"{where}.scope_separator: must be a space or a comma")
        scopes = spec.get("default_scopes", [])
        if not isinstance(scopes, list) or not all(isinstance(s, str) and s for s in scopes):
            raise CatalogueError(f"{where}.default_scopes: must be a list of scopes")
        if not isinstance(spec.get("pkce", False), bool):
            raise CatalogueError(f"{where}.pkce: must be true or false")
        for key in ("authorization_params", "account_properties"):
            _names_to_strings(f"{where}.{key}", spec.get(key, {}))
        requests = spec.get("account_requests", [])
        if not isinstance(requests, list):
            raise CatalogueError(f"{where}.account_requests: must be a list of requests")
        return cls(**{**spec, "default_scopes": tuple(scopes), "account_requests": tuple(
            AccountRequest.parse(f"{where}.account_requests[{i}]", request) for i, request in enumerate(requests))})


@dataclass(frozen=True)
class Listing:
    """One paged upstream listing the sync engine reads (see `read:` in catalogue.yaml)."""

    path: str
    method: str = "GET"
    query: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    items: str = ""  # dotted path to the list of items; "" = the answer itself
    next: dict[str, str] = field(default_factory=dict)
    record: str = ""  # dotted path from an item to the record; "" = the item
    id: str = "id"
    updated_at: str = ""
    deleted_when: dict[str, Any] | None = None
    deleted: bool = False  # every item is a deletion (a `deletions:` listing)
    newest_first: bool = False

    @classmethod
    def parse(cls, where: str, spec: dict[str, Any], **extra) -> Listing:
        unknown = set(spec) - {f for f in cls.__dataclass_fields__ if f != "deleted"}
        if unknown:
            raise CatalogueError(f"{where}: unknown keys {sorted(unknown)}")
        if "path" not in spec:
            raise CatalogueError(f"{where}: `path` is required")
        paging = spec.get("next") or {}
        if paging and not ("url" in paging or {"param", "value"} <= set(paging)):
            raise CatalogueError(f"{where}.next: give `url`, or `param` and `value`")
        return cls(**{**spec, "method": spec.get("method", "GET").upper(), "next": dict(paging)}, **extra)


@dataclass(frozen=True)
class ReadSpec:
    """How the sync engine reads a collection: backfill with `list`, then incremental passes
    with `changes` (default: `list` again, from the watermark) and `deletions` (if any)."""

    list: Listing
    changes: Listing
    deletions: Listing | None = None
    fields: tuple[str, ...] = ()

    @classmethod
    def parse(cls, where: str, spec: dict[str, Any]) -> ReadSpec:
        unknown = set(spec) - {"list", "changes", "deletions", "fields"}
        if unknown or "list" not in spec:
            raise CatalogueError(f"{where}: `list` is required; unknown keys {sorted(unknown)}")
        listing = Listing.parse(f"{where}.list", spec["list"])
        return cls(
            list=listing,
            changes=Listing.parse(f"{where}.changes", spec["changes"]) if "changes" in spec else listing,
            deletions=Listing.parse(f"{where}.deletions", spec["deletions"], deleted=True)
            if "deletions" in spec else None,
            fields=tuple(spec.get("fields", ())),
        )


@dataclass(frozen=True)
class WriteRequest:
    """One upstream request of a write: `{id}` in the path is the record's upstream id, `{fields}`
    in the query the read spec's field list."""

    method: str
    path: str
    query: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, where: str, spec: dict[str, Any]) -> WriteRequest:
        unknown = set(spec) - {"method", "path", "query"}
        if unknown or not {"method", "path"} <= set(spec):
            raise CatalogueError(f"{where}: give `method` and `path` (and `query`); unknown keys {sorted(unknown)}")
        return cls(spec["method"].upper(), spec["path"], dict(spec.get("query") or {}))


@dataclass(frozen=True)
class WriteSpec:
    """How mutations create, update and delete a collection's records upstream (`write:` in
    catalogue.yaml; a provider's own `write:` block gives defaults for all its collections)."""

    create: WriteRequest | None = None
    update: WriteRequest | None = None
    delete: WriteRequest | None = None
    fetch: WriteRequest | None = None  # read the record back after a create or update
    format: str = "json"  # request bodies: "json" or "form" (Stripe's nested keys)
    wrap: str = ""  # the body is {wrap: data} (HubSpot's "properties")
    id: str = "id"  # where the record holds its upstream id
    created_id: str = ""  # where a create's answer holds the new id (default: `id`)
    updated_at: str = ""  # where the record holds its change time ("": the answer's Date header)
    error_message: str = ""  # where an error answer holds the upstream's message
    idempotency_header: str = ""  # the header the upstream dedupes writes by (Stripe's Idempotency-Key)

    OPERATIONS = ("create", "update", "delete", "fetch")

    @classmethod
    def parse(cls, where: str, spec: dict[str, Any]) -> WriteSpec:
        unknown = set(spec) - set(cls.__dataclass_fields__)
        if unknown:
            raise CatalogueError(f"{where}: unknown keys {sorted(unknown)}")
        if spec.get("format", "json") not in ("json", "form"):
            raise CatalogueError(f"{where}.format: must be json or form")
        values = {
            key: WriteRequest.parse(f"{where}.{key}", value) if key in cls.OPERATIONS else value
            for key, value in spec.items()
        }
        return cls(**values)


@dataclass(frozen=True)
class Collection:
    id: str  # "stripe:customer"
    provider: str
    key: str  # "customer"
    name: str
    spec: dict[str, Any] = field(default_factory=dict)
    read: ReadSpec | None = None  # None: the sync engine cannot read it
    write: WriteSpec | None = None  # None: mutations cannot write it


@dataclass(frozen=True)
class Provider:
    key: str
    name: str
    base_url: str | None
    permitted_hosts: tuple[str, ...]
    default_rate_limit: RateLimitDefault
    headers: dict[str, str]
    credential_kinds: dict[str, CredentialKind]
    # How its accounts are connected and refreshed with OAuth2; None: it has no OAuth of its own.
    oauth: OAuthSpec | None
    collections: dict[str, Collection]


def _oauth(key: str, entry: dict[str, Any], kinds: dict[str, CredentialKind]) -> OAuthSpec | None:
    """The provider's `oauth:` block, whose credential kind must be one of its own that sends the
    access token (a bearer, header or query `property`), and whose account requests use what the
    connection knows by then."""
    if "oauth" not in entry:
        return None
    oauth = OAuthSpec.parse(f"{key}.oauth", entry["oauth"])
    kind = kinds.get(oauth.credential_kind)
    if kind is None or "property" not in kind.auth:
        raise CatalogueError(f"{key}.oauth.credential_kind: must be one of {key}'s kinds whose auth sends a token")
    known = {kind.auth["property"], *oauth.account_properties}
    hosts = [*entry.get("permitted_hosts", ()), *filter(None, [urlsplit(entry.get("base_url") or "").hostname])]
    for i, request in enumerate(oauth.account_requests):
        request.check(f"{key}.oauth.account_requests[{i}]", known, {"kind", *kind.secret}, hosts)
        known |= set(request.properties)
    return oauth


class ProviderCatalogue:
    def __init__(self, providers: dict[str, Provider]):
        self.providers = providers

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProviderCatalogue:
        providers = {}
        for key, entry in data["providers"].items():
            kinds = {
                kind: CredentialKind.parse(f"{key}.credential_kinds.{kind}", kind, spec)
                for kind, spec in entry["credential_kinds"].items()
            }
            collections = {}
            write_defaults = entry.get("write") or {}
            for ckey, spec in (entry.get("collections") or {}).items():
                spec = dict(spec or {})
                read = spec.pop("read", None)
                write = spec.pop("write", None)
                collections[ckey] = Collection(
                    id=f"{key}:{ckey}", provider=key, key=ckey, name=spec.pop("name", ckey), spec=spec,
                    read=ReadSpec.parse(f"{key}:{ckey}.read", read) if read else None,
                    write=WriteSpec.parse(f"{key}:{ckey}.write", {**write_defaults, **write}) if write else None,
                )
            providers[key] = Provider(
                key=key,
                name=entry.get("name", key),
                base_url=entry.get("base_url"),
                permitted_hosts=tuple(entry.get("permitted_hosts", ())),
                default_rate_limit=RateLimitDefault.parse(f"{key}.default_rate_limit", entry["default_rate_limit"]),
                headers=dict(entry.get("headers") or {}),
                credential_kinds=kinds,
                oauth=_oauth(key, entry, kinds),
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
