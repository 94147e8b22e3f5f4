"""Upstream accounts: a credential made ready for calls (auth, base URL, permitted hosts, budget).

    account = await accounts.for_sync(org_id, sync_id)
    headers, query = account.authorize(headers, query)

Resolving an account reads the credential, decrypts its secrets and works out its budget; the
proxy does this on every call, so answers are cached for `ttl` seconds (2 by default). Changes
made through this process are seen at once (`forget`); changes made on another replica within
`ttl` seconds.

A credential row keeps its properties in two parts: `properties` in the clear, each secret shown
as "***********", and `secrets`, the secret ones encrypted. `seal_properties` writes both parts
and `open_properties` joins them again; what is secret is the kind's (CredentialKind.secret).
"""

from __future__ import annotations

import base64
import datetime
import json
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import quote, unquote_plus, urlsplit

from headwater.cache import TtlCache
from headwater.crypto import SECRET_MASK, SecretBox
from headwater.errors import not_found
from headwater.store import Credential, Store, Sync
from headwater.store.health import ERROR
from headwater.upstream.catalogue import BASE_URL_PROPERTY, CredentialKind, Provider, ProviderCatalogue, fill_template
from headwater.upstream.oauth_apps import OAuthAppClient, OAuthApps
from headwater.upstream.budget import Budget, Window
from headwater.upstream.requests import UnsafeRequest

# A custom credential lists further hosts its fully-qualified proxied URLs may name.
PERMITTED_HOSTS_PROPERTY = "permitted_hosts"
# Credential rows the start-up pass reads per transaction (Accounts.seal_stored_secrets).
SEAL_BATCH_ROWS = 500


def open_properties(row: Credential, box: SecretBox) -> dict:
    """Every property of a stored credential, its secrets decrypted."""
    return {**row.properties, **json.loads(box.decrypt(row.secrets))}


def seal_properties(row: Credential, kind: CredentialKind, properties: dict, box: SecretBox) -> None:
    """Stores every one of `properties` on `row` (not saved): the secrets encrypted in
    `row.secrets`, the rest in `row.properties` with each secret replaced by the mask.

    Secret: the kind's secrets, and whatever the row kept encrypted already (so a kind changed
    by PATCH does not reveal a property the old kind kept secret)."""
    secret = kind.secret | (set(json.loads(box.decrypt(row.secrets))) if row.secrets else set())
    row.properties = {name: SECRET_MASK if name in secret else value for name, value in properties.items()}
    row.secrets = box.encrypt(json.dumps({name: value for name, value in properties.items() if name in secret}))


def holds_secrets_in_the_clear(row: Credential, kind: CredentialKind) -> bool:
    """Whether `row` was stored before one of its properties became secret."""
    return any(name in kind.secret and value != SECRET_MASK for name, value in row.properties.items())


@dataclass(frozen=True)
class Refusal:
    """The provider refused the credential's refresh token: what the caller was told, and when."""

    note: str
    at: datetime.datetime


@dataclass(frozen=True)
class UpstreamAccount:
    credential_id: str
    org_id: str
    provider: Provider
    kind: CredentialKind
    budget: Budget
    # Every property, secrets included: never log or show it.
    properties: dict = field(repr=False)
    oauth_app: OAuthAppClient | None = None  # the app it names (`oauth_app_id`), refreshed through
    # Set while the credential's health is `error` (its refresh was refused): headwater.store.health.
    refresh_refusal: Refusal | None = None

    # Computed once per account (an account is immutable; a refreshed token makes a new one).
    @cached_property
    def base_url(self) -> str:
        """The credential's `base_url` property, else its kind's `base_url_property` (Salesforce's
        instance_url), else the provider's base URL, its `{P}` filled from the credential's
        properties (Shopify's `https://{shop}.myshopify.com/...`; each value checked by
        catalogue.template_problem, so it names a host or path segment of the provider's and no other)."""
        for name in (BASE_URL_PROPERTY, self.kind.base_url_property):
            if name and self.properties.get(name):
                return str(self.properties[name])
        if not self.provider.base_url:
            raise UnsafeRequest(f"credential {self.credential_id} has no base_url")
        try:
            return fill_template(self.provider.base_url, self.properties)
        except ValueError as unfilled:
            # A connection asks for its account facts (Atlassian's cloud id) before the template can
            # be filled: a template of the path alone leaves its fixed host's root to call.
            parts = urlsplit(self.provider.base_url)
            if "{" not in parts.netloc and all(name not in self.properties for name in self.provider.template_properties):
                return f"{parts.scheme}://{parts.netloc}"
            raise UnsafeRequest(f"credential {self.credential_id}: {unfilled}") from None

    @cached_property
    def permitted_hosts(self) -> tuple[str, ...]:
        extra = self.properties.get(PERMITTED_HOSTS_PROPERTY) or []
        try:
            own = urlsplit(self.base_url).hostname
        except UnsafeRequest:
            own = None  # a template not filled yet (before a connection's facts): calls go nowhere
        return (*self.provider.permitted_hosts, *([own] if own else []), *extra)

    @cached_property
    def query_key(self) -> tuple[str, str] | None:
        """The query parameter (name, value) this credential's auth adds to every URL, if any:
        answers must never hand it back (requests.LinkRewriter removes it)."""
        auth = self.kind.auth
        if auth["type"] != "query":
            return None
        name = auth.get("name") or self.properties[auth["name_property"]]
        return str(name), str(self.properties[auth["property"]])

    @cached_property
    def _default_headers(self) -> dict[str, tuple[str, str]]:
        return {name.lower(): (name, value) for name, value in self.provider.headers.items()}

    def authorize(self, headers: list[tuple[str, str]], query: str) -> tuple[list[tuple[str, str]], str]:
        """The request's headers and query with this credential's auth and the provider's
        required headers added (a header the caller sent wins over a provider default, but
        `Accept: */*`, what HTTP clients send by default, states no preference). The credential's
        auth replaces a header or query parameter of the same name the caller sent: an SDK
        sends its token there (ShopifyAPI's X-Shopify-Access-Token), and that token is Headwater's."""
        defaults = self._default_headers
        if "accept" in defaults:
            headers = [(n, v) for n, v in headers if not (n.lower() == "accept" and v.strip() == "*/*")]
        sent = {name.lower() for name, _ in headers}
        headers = headers + [pair for key, pair in defaults.items() if key not in sent]
        auth = self.kind.auth
        kind = auth.get("type", "none")
        props = self.properties
        if kind == "bearer":
            headers.append(("Authorization", f"Bearer {props[auth['property']]}"))
        elif kind in ("basic", "basic_key"):  # basic_key: the API key, an empty password
            pair = (f"{props[auth['username']]}:{props[auth['password']]}" if kind == "basic"
                    else f"{props[auth['property']]}:").encode()
            headers.append(("Authorization", "Basic " + base64.b64encode(pair).decode()))
        elif kind == "header":
            name = auth.get("name") or props[auth["name_property"]]
            headers = [(n, v) for n, v in headers if n.lower() != name.lower()]
            headers.append((name, auth.get("prefix", "") + str(props[auth["property"]])))
        elif kind == "query":
            name, value = self.query_key
            kept = [p for p in query.split("&") if p and unquote_plus(p.partition("=")[0]) != name]
            query = "&".join([*kept, f"{quote(name, safe='')}={quote(value, safe='')}"])
        return headers, query


def credential_budget(provider: Provider, syncs: list[Sync]) -> Budget:
    """One budget per credential: every window its syncs' rate limits give (else the provider's
    default), the strictest where several give one interval length (the smallest limit per
    interval), and the smallest concurrency cap. The shortest window comes first.

        syncs {10 per 1 s} and {50 per 10 s, 1,000 per day}  ->  10 per 1 s, 50 per 10 s, 1,000 per day
    """
    if not syncs:
        d = provider.default_rate_limit
        limits = [(d.allowed_requests, d.interval), *((w.allowed_requests, w.interval) for w in d.windows)]
        caps = [d.max_concurrent_requests] if d.max_concurrent_requests > 0 else []
    else:
        limits = [(n, t) for s in syncs for n, t in [(s.rate_allowed_requests, s.rate_interval), *s.rate_windows]]
        caps = [s.rate_max_concurrent for s in syncs if s.rate_max_concurrent > 0]
    strictest: dict[int, int] = {}
    for n, t in limits:
        strictest[t] = min(n, strictest.get(t, n))
    (t0, n0), *more = sorted(strictest.items())
    return Budget(n0, t0, min(caps) if caps else 0, tuple(Window(n, t) for t, n in more))


class Accounts:
    def __init__(self, store: Store, box: SecretBox, catalogue: ProviderCatalogue, oauth_apps: OAuthApps,
                 ttl: float = 2.0):
        self.store = store
        self.box = box
        self.catalogue = catalogue
        self.oauth_apps = oauth_apps
        self._cache: TtlCache[UpstreamAccount] = TtlCache(ttl)

    def forget(self) -> None:
        """Drops every cached account (after a credential or sync changes in this process)."""
        self._cache.clear()

    async def for_sync(self, org_id: str, sync_id: str) -> UpstreamAccount:
        return await self._cached(("sync", org_id, sync_id), self._load_for_sync, org_id, sync_id)

    async def for_credential(self, org_id: str, credential_id: str) -> UpstreamAccount:
        return await self._cached(("credential", org_id, credential_id), self.load, org_id, credential_id)

    async def reload(self, org_id: str, credential_id: str) -> UpstreamAccount:
        """The account as stored now, bypassing the cache."""
        return await self.store.run(self.load, org_id, credential_id)

    async def _cached(self, key, load, *args):
        account = self._cache.peek(key)
        if account is None:
            account = await self._cache.get(key, lambda: self.store.run(load, *args))
        return account

    def _load_for_sync(self, org_id: str, sync_id: str) -> UpstreamAccount:
        sync = Sync.get_or_none((Sync.id == sync_id) & (Sync.org == org_id))
        if sync is None:
            raise not_found("sync", sync_id)
        return self.load(org_id, sync.credential_id)

    def load(self, org_id: str, credential_id: str) -> UpstreamAccount:
        """The account as stored now (call inside `store.run`)."""
        row = Credential.get_or_none((Credential.id == credential_id) & (Credential.org == org_id))
        if row is None:
            raise not_found("credential", credential_id)
        provider = self.catalogue.provider(row.provider)
        syncs = list(Sync.select().where(Sync.credential == row.id))
        return UpstreamAccount(
            credential_id=row.id,
            org_id=row.org_id,
            provider=provider,
            kind=provider.credential_kinds[row.kind],
            budget=credential_budget(provider, syncs),
            properties=open_properties(row, self.box),
            oauth_app=self.oauth_apps.find(row.org_id, row.oauth_app_id) if row.oauth_app_id else None,
            refresh_refusal=Refusal(row.health_last_error, row.health_last_error_at)
            if row.health_status == ERROR else None,
        )

    async def seal_stored_secrets(self) -> int:
        """Encrypts every secret a credential row still holds in the clear, written before its
        property was secret (older versions kept `client_secret` and some `refresh_token`s so).
        The server runs this at start-up, after migrating; returns how many rows it sealed."""
        sealed, after = 0, ""
        while True:
            count, after = await self.store.run(self._seal_batch, after)
            sealed += count
            if not after:
                return sealed

    def _seal_batch(self, after: str) -> tuple[int, str]:
        """Seals the rows of one batch past id `after` (in `store.run`); (how many, the last id
        read, or "" when no rows are left)."""
        columns = (Credential.id, Credential.provider, Credential.kind, Credential.properties)
        batch = list(Credential.select(*columns).where(Credential.id > after).order_by(Credential.id).limit(SEAL_BATCH_ROWS))
        sealed = 0
        for seen in batch:
            kind = self._kind_of(seen)
            if kind is None or not holds_secrets_in_the_clear(seen, kind):
                continue
            query = Credential.select().where(Credential.id == seen.id)
            # PostgreSQL: under a row lock, so that a change made meanwhile is not lost (SQLite's
            # transaction holds the write lock already); a PATCH may have changed its kind.
            row = (query.for_update() if self.store.is_postgres else query).get()
            seal_properties(row, self._kind_of(row), open_properties(row, self.box), self.box)
            row.save()
            sealed += 1
        return sealed, batch[-1].id if len(batch) == SEAL_BATCH_ROWS else ""

    def _kind_of(self, row: Credential) -> CredentialKind | None:
        provider = self.catalogue.provider(row.provider)
        return provider.credential_kinds.get(row.kind) if provider else None
