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

import difflib
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


def check_keys(where: str, spec: Any, allowed: Iterable[str]) -> dict[str, Any]:
    """`spec` as a mapping of only `allowed` keys, else CatalogueError naming the entry and the key:

        check_keys("providers.github.collections.issue.read.list", {"itmes": "x"}, ("items",))
        # CatalogueError: providers.github.collections.issue.read.list: unknown key "itmes" (did you mean "items"?)
    """
    if not isinstance(spec, dict):
        raise CatalogueError(f"{where}: must be a mapping")
    allowed = tuple(allowed)
    for key in spec:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else f"; known keys: {', '.join(sorted(allowed))}"
            raise CatalogueError(f'{where}: unknown key "{key}"{hint}')
    return spec


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
    # HTTP Basic with an API key as the username and an empty password (Close, Greenhouse)
    "basic_key": AuthShape(("property",), "property"),
}
# Optional keys of an auth type: a header's `prefix` ("SSWS ", "Bot ", "Zoho-oauthtoken ") is sent
# before the property.
AUTH_OPTIONAL = {"header": ("prefix",)}


def check_auth(where: str, auth: Any) -> dict[str, Any]:
    """An `auth` block as the catalogue gives it, refused (CatalogueError) unless well formed."""
    if not isinstance(auth, dict) or auth.get("type") not in AUTH_SHAPES:
        raise CatalogueError(f"{where}: `type` must be one of {', '.join(AUTH_SHAPES)}")
    shape = AUTH_SHAPES[auth["type"]]
    check_keys(f"{where} (type {auth['type']})", auth,
               ("type", *shape.keys, *AUTH_OPTIONAL.get(auth["type"], ()),
                *(("name", "name_property") if shape.named else ())))
    for key in shape.keys:
        if not isinstance(auth.get(key), str) or not auth[key]:
            raise CatalogueError(f"{where}: give `{key}`, the name of a credential property")
    if "prefix" in auth and not isinstance(auth["prefix"], str):
        raise CatalogueError(f"{where}.prefix: give the text sent before the property (e.g. \"SSWS \")")
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
        spec = check_keys(where, spec, cls.__dataclass_fields__)  # names a misspelt key ("did you mean")
        if not {"allowed_requests", "interval"} <= set(spec):
            raise CatalogueError(f"{where}: give allowed_requests, interval and optionally max_concurrent_requests "
                                 f"and windows: [{{allowed_requests, interval}}]")
        for key, value in spec.items():
            if key != "windows" and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise CatalogueError(f"{where}.{key}: must be a number")
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


# --- how a provider's answers are read: `limits:` and `retry:` (catalogue.yaml's header) -------

WAIT_UNITS = ("seconds", "ms", "epoch", "epoch_ms", "http_date", "iso8601")
REMAINING_FORMS = ("number", "usage", "ietf")


@dataclass(frozen=True)
class RateLimitedWhen:
    """An answer that means "rate limited": this status, and (if given) this header equal to
    `equals`, or the body containing `body_contains`."""

    status: int
    header: str = ""  # lower case
    equals: str = ""
    body_contains: str = ""

    KEYS = ("status", "header", "equals", "body_contains")


@dataclass(frozen=True)
class WaitHeader:
    """A header that says how long until the budget is back: seconds or ms from now, an epoch
    (seconds or ms), an HTTP date, or an ISO-8601 time (Jira's X-RateLimit-Reset)."""

    header: str  # lower case
    unit: str = "seconds"

    KEYS = ("header", "unit")


@dataclass(frozen=True)
class RemainingHeader:
    """A header that says how much budget is left: a number, Salesforce's `api-usage=used/limit`
    (`usage`), or the IETF `RateLimit` field (`ietf`: `r=`/`remaining=`, with its reset `t=`/`reset=`)."""

    header: str  # lower case
    form: str = "number"

    KEYS = ("header", "form")


@dataclass(frozen=True)
class Limits:
    """How a provider says it rate limits (a `limits:` block)."""

    rate_limited: tuple[RateLimitedWhen, ...] = (RateLimitedWhen(429),)
    wait: tuple[WaitHeader, ...] = ()  # read after Retry-After, which every provider may send
    remaining: tuple[RemainingHeader, ...] = (RemainingHeader("ratelimit", "ietf"),)
    reserve: int = 0  # pause the credential once the remaining budget is at or below this
    # How long, when the budget ran out and no header says: short, as a bare 429 usually means a
    # per-second window (Stripe's); a provider with a longer window names its own.
    pause_seconds: float = 1.0

    KEYS = ("rate_limited", "wait", "remaining", "reserve", "pause_seconds")

    @functools.cached_property
    def header_names(self) -> frozenset[str]:
        """Every header the classification reads (lower case): one pass over an answer finds them.
        Worked out once (cached on the frozen object: every answer asks)."""
        return frozenset({"retry-after", *(r.header for r in self.rate_limited if r.header),
                          *(w.header for w in self.wait), *(r.header for r in self.remaining)})

    @functools.cached_property
    def rate_limited_successes(self) -> frozenset[int]:
        """The 2xx statuses some `rate_limited` rule names (Marketo's 200 with error 606 in its body):
        only answers of these statuses are read further before they count as a success."""
        return frozenset(r.status for r in self.rate_limited if r.status < 300)

    @classmethod
    def parse(cls, where: str, spec: Any) -> Limits:
        spec = check_keys(where, spec, cls.KEYS)
        values: dict[str, Any] = {}
        for key, item_cls in (("rate_limited", RateLimitedWhen), ("wait", WaitHeader), ("remaining", RemainingHeader)):
            if key in spec:
                values[key] = tuple(_limit_item(f"{where}.{key}[{i}]", item_cls, item)
                                    for i, item in enumerate(_list(f"{where}.{key}", spec[key])))
        for rule in values.get("rate_limited", ()):
            if not (400 <= rule.status <= 599 or (200 <= rule.status <= 299 and rule.body_contains)):
                raise CatalogueError(f"{where}.rate_limited: status {rule.status} is not an HTTP error status "
                                     f"(a 2xx answer is rate limited only by its body: give body_contains)")
        for i, wait in enumerate(values.get("wait", ())):
            if wait.unit not in WAIT_UNITS:
                raise CatalogueError(f"{where}.wait[{i}].unit: must be one of {', '.join(WAIT_UNITS)}")
        for i, remaining in enumerate(values.get("remaining", ())):
            if remaining.form not in REMAINING_FORMS:
                raise CatalogueError(f"{where}.remaining[{i}].form: must be one of {', '.join(REMAINING_FORMS)}")
        for key in ("reserve", "pause_seconds"):
            if key in spec:
                if isinstance(spec[key], bool) or not isinstance(spec[key], int | float) or spec[key] < 0:
                    raise CatalogueError(f"{where}.{key}: must be a number, 0 or more")
                values[key] = spec[key]
        return cls(**values)


@dataclass(frozen=True)
class RetryPolicy:
    """Which answers are worth repeating, and what else an error answer says (a `retry:` block)."""

    transient: frozenset[int] = frozenset({502, 503, 504})  # 5xx answers repeated when safe
    idempotency_header: str = ""  # the provider deduplicates writes carrying it: POSTs may be repeated
    error_message: str = ""  # where an error answer's JSON holds the provider's message (dotted path)

    KEYS = ("transient", "idempotency_header", "error_message")

    @classmethod
    def parse(cls, where: str, spec: Any) -> RetryPolicy:
        spec = check_keys(where, spec, cls.KEYS)
        values: dict[str, Any] = {}
        if "transient" in spec:
            statuses = _list(f"{where}.transient", spec["transient"])
            if not all(isinstance(s, int) and 500 <= s <= 599 for s in statuses):
                raise CatalogueError(f"{where}.transient: must list 5xx statuses")
            values["transient"] = frozenset(statuses)
        for key in ("idempotency_header", "error_message"):
            if key in spec:
                if not isinstance(spec[key], str):
                    raise CatalogueError(f"{where}.{key}: must be a string")
                values[key] = spec[key]
        return cls(**values)


def _list(where: str, value: Any) -> list:
    if not isinstance(value, list):
        raise CatalogueError(f"{where}: must be a list")
    return value


def _limit_item(where: str, item_cls, spec: Any):
    spec = check_keys(where, spec, item_cls.KEYS)
    first = item_cls.KEYS[0]
    if first not in spec:
        raise CatalogueError(f"{where}: give `{first}`")
    expected = int if first == "status" else str
    spec = {k: str(v) if k == "equals" and isinstance(v, int) and not isinstance(v, bool) else v
            for k, v in spec.items()}
    for key, value in spec.items():
        want = expected if key == first else str
        if isinstance(value, bool) or not isinstance(value, want) or (want is str and key == first and not value):
            raise CatalogueError(f"{where}.{key}: must be {'a status' if want is int else 'a string'}")
    return item_cls(**{k: v.lower() if k == "header" else v for k, v in spec.items()})


def _get_request(where: str, spec: Any, keys: frozenset[str], give: str) -> str:
    """The path of the GET `spec` declares, refused (CatalogueError) unless it is a mapping of
    `keys` whose method, if given, is GET: `give` says what to give."""
    if not isinstance(spec, dict):
        raise CatalogueError(f"{where}: give {give}")
    check_keys(where, spec, keys)
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
    # How this kind's answers are read (the provider's `limits:` and `retry:`, with the kind's own on top).
    limits: Limits = field(default_factory=lambda: Limits())
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy())

    KEYS = ("required", "secret", "auth", "base_url_property", "verification", "limits", "retry")

    @classmethod
    def parse(cls, where: str, name: str, spec: dict[str, Any], limits: dict | None = None,
              retry: dict | None = None) -> CredentialKind:
        """`limits` and `retry`: the provider's blocks, which the kind's own override key by key."""
        check_keys(where, spec, cls.KEYS)
        for key in ("required", "secret"):
            names = spec.get(key, [])
            if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
                raise CatalogueError(f"{where}.{key}: must be a list of property names")
        auth = check_auth(f"{where}.auth", spec.get("auth", {"type": "none"}))
        secret = secret_properties(auth, spec.get("secret", ()))
        verification = Verification.parse(f"{where}.verification", spec["verification"]) if "verification" in spec else None
        own_limits = check_keys(f"{where}.limits", spec.get("limits") or {}, Limits.KEYS)
        own_retry = check_keys(f"{where}.retry", spec.get("retry") or {}, RetryPolicy.KEYS)
        return cls(
            name, tuple(spec.get("required", ())), secret, auth, spec.get("base_url_property"), verification,
            Limits.parse(f"{where}.limits", {**(limits or {}), **own_limits}),
            RetryPolicy.parse(f"{where}.retry", {**(retry or {}), **own_retry}),
        )


SCOPE_SEPARATORS = (" ", ",")
PLACEHOLDER = re.compile(r"\{(\w+)\}")  # `{property}` in an account request's path or query

# What may fill a `{P}` of a provider's base URL (Shopify's `{shop}`, Zendesk's `{subdomain}`,
# Atlassian's `{cloud_id}`): one DNS label or path segment, so that no value can change the URL's
# shape (no dot, slash, `@`, colon, `%`, `?` or `#`).
TEMPLATE_VALUE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def template_properties(url: str | None) -> tuple[str, ...]:
    """The properties `{P}` of a base URL template names, in order: ("shop",)."""
    return tuple(dict.fromkeys(PLACEHOLDER.findall(url or "")))


def template_problem(value: Any) -> str | None:
    """Why `value` cannot fill a `{P}` of a base URL template, or None if it can."""
    if isinstance(value, str) and TEMPLATE_VALUE.fullmatch(value):
        return None
    return ("must be the account's name as the provider's host or path has it (letters, digits and inner "
            "hyphens, at most 63: e.g. \"acme\" for acme.zendesk.com), not a URL or host")


def fill_template(url: str, properties: dict[str, Any]) -> str:
    """`url` with each `{P}` replaced by the property P; ValueError naming the first property that
    is missing or cannot fill it (template_problem)."""
    for name in template_properties(url):
        if properties.get(name) in (None, ""):
            raise ValueError(f"property `{name}` is missing: the provider's base URL {url} needs it")
        if problem := template_problem(properties[name]):
            raise ValueError(f"property `{name}` {problem}")
    return PLACEHOLDER.sub(lambda m: str(properties[m.group(1)]), url)


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
    # Credential properties to keep from the redirect back to the callback: {property: its query
    # parameter} (QuickBooks names the company there: `realmId`).
    callback_properties: dict[str, str] = field(default_factory=dict)
    # How the app authenticates at the token endpoint: "post" (client_id and client_secret in the
    # form) or "basic" (HTTP Basic, which Notion and Zoom want).
    client_auth: str = "post"

    @property
    def fact_properties(self) -> frozenset[str]:
        """Every property a connection learns of the account (a new connection replaces them all)."""
        return frozenset({*self.account_properties, *self.callback_properties,
                          *(p for r in self.account_requests for p in r.properties)})

    def scope(self, scopes: Iterable[str]) -> str:
        """The `scope` parameter asking for `scopes`."""
        return self.scope_separator.join(scopes)

    @classmethod
    def parse(cls, where: str, spec: Any) -> OAuthSpec:
        check_keys(where, spec, cls.__dataclass_fields__)
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
        if spec.get("client_auth", "post") not in ("post", "basic"):
            raise CatalogueError(f"{where}.client_auth: must be post or basic")
        if not isinstance(spec.get("pkce", False), bool):
            raise CatalogueError(f"{where}.pkce: must be true or false")
        for key in ("authorization_params", "account_properties", "callback_properties"):
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
        check_keys(where, spec, (f for f in cls.__dataclass_fields__ if f != "deleted"))
        if "path" not in spec:
            raise CatalogueError(f"{where}: `path` is required")
        paging = check_keys(f"{where}.next", spec.get("next") or {}, ("param", "value", "while", "until", "url"))
        if spec.get("deleted_when") is not None:
            check_keys(f"{where}.deleted_when", spec["deleted_when"], ("path", "equals"))
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
        check_keys(where, spec, ("list", "changes", "deletions", "fields"))
        if "list" not in spec:
            raise CatalogueError(f"{where}: `list` is required")
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
    in the query the read spec's field list; `body`, if given, is sent instead of the mutation's
    data, with `"{data}"` (a whole value) standing for the data and `{id}` for the id (GraphQL)."""

    method: str
    path: str
    query: dict[str, Any] = field(default_factory=dict)
    body: Any = None

    @classmethod
    def parse(cls, where: str, spec: dict[str, Any]) -> WriteRequest:
        check_keys(where, spec, ("method", "path", "query", "body"))
        if not {"method", "path"} <= set(spec):
            raise CatalogueError(f"{where}: give `method` and `path` (and `query`, `body`)")
        return cls(spec["method"].upper(), spec["path"], dict(spec.get("query") or {}), spec.get("body"))


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
    record: str = ""  # where an answer holds the record ("": the answer is the record; Zendesk's "ticket")
    error_message: str = ""  # where an error answer holds the upstream's message
    idempotency_header: str = ""  # the header the upstream dedupes writes by (Stripe's Idempotency-Key)

    OPERATIONS = ("create", "update", "delete", "fetch")

    @classmethod
    def parse(cls, where: str, spec: dict[str, Any]) -> WriteSpec:
        check_keys(where, spec, cls.__dataclass_fields__)
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

    @property
    def capabilities(self) -> dict[str, bool]:
        """What Headwater can do with its records (discovery shows it): `read` (sync), `changes`
        (incremental passes find changed records: a `changes` listing, or the list read from the
        watermark by change time), `deletions` (a `deletions` listing or a `deleted_when` flag),
        and `create`, `update`, `delete` (mutations)."""
        read, write = self.read, self.write
        listings = [] if read is None else [read.list, read.changes, *([read.deletions] if read.deletions else [])]
        return {
            "read": read is not None,
            "changes": read is not None and (read.changes is not read.list or bool(read.list.updated_at)),
            "deletions": read is not None and (read.deletions is not None or any(l.deleted_when for l in listings)),
            "create": bool(write and write.create),
            "update": bool(write and write.update),
            "delete": bool(write and write.delete),
        }


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
    # How its answers are read (a credential kind may say otherwise: CredentialKind.limits, .retry).
    limits: Limits = field(default_factory=lambda: Limits())
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy())

    # The properties `{P}` in `base_url` names (per-account hosts: Shopify's `shop`): every kind
    # requires them, and their values are checked with `template_problem`.
    template_properties: tuple[str, ...] = ()

    def template_violations(self, properties: dict[str, Any], field: str) -> list[tuple[str, str]]:
        """(field, problem) for each template property of `properties` that cannot fill the base URL
        (a missing one is the kind's `required` check's to report)."""
        return [(f"{field}.{name}", problem) for name in self.template_properties
                if properties.get(name) not in (None, "") and (problem := template_problem(properties[name]))]

    @property
    def account_facts(self) -> tuple[str, ...]:
        """The per-account facts a credential must give before calls can go anywhere: the base URL
        template's properties and the kinds' `base_url_property` (discovery shows them)."""
        own = [kind.base_url_property for kind in self.credential_kinds.values() if kind.base_url_property]
        return tuple(dict.fromkeys([*self.template_properties, *own]))


def _check_provider_types(where: str, entry: dict[str, Any]) -> None:
    """The plain values of a provider entry have the types Headwater reads them as."""
    if not isinstance(entry.get("name", ""), str):
        raise CatalogueError(f"{where}.name: must be a string")
    if entry.get("base_url") is not None and not isinstance(entry["base_url"], str):
        raise CatalogueError(f"{where}.base_url: must be a URL or null")
    hosts = entry.get("permitted_hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
        raise CatalogueError(f"{where}.permitted_hosts: must be a list of host names")
    _names_to_strings(f"{where}.headers", entry.get("headers") or {})


# The keys a provider entry and a collection may have (catalogue.yaml's header says what each means).
PROVIDER_KEYS = ("name", "base_url", "permitted_hosts", "default_rate_limit", "headers", "oauth",
                 "credential_kinds", "collections", "write", "limits", "retry")
COLLECTION_KEYS = ("name", "read", "write")


def _oauth(key: str, entry: dict[str, Any], kinds: dict[str, CredentialKind]) -> OAuthSpec | None:
    """The provider's `oauth:` block, whose credential kind must be one of its own that sends the
    access token (a bearer, header or query `property`), and whose account requests use what the
    connection knows by then."""
    if "oauth" not in entry:
        return None
    oauth = OAuthSpec.parse(f"providers.{key}.oauth", entry["oauth"])
    kind = kinds.get(oauth.credential_kind)
    if kind is None or "property" not in kind.auth:
        raise CatalogueError(f"providers.{key}.oauth.credential_kind: must be one of {key}'s kinds whose auth sends a token")
    known = {kind.auth["property"], *oauth.account_properties, *oauth.callback_properties}
    base_host = urlsplit(entry.get("base_url") or "").hostname or ""
    hosts = [*entry.get("permitted_hosts", ()), *([base_host] if base_host and "{" not in base_host else [])]
    for i, request in enumerate(oauth.account_requests):
        request.check(f"providers.{key}.oauth.account_requests[{i}]", known, {"kind", *kind.secret}, hosts)
        known |= set(request.properties)
    return oauth


def _templates(key: str, entry: dict[str, Any], kinds: dict[str, CredentialKind]) -> tuple[str, ...]:
    """The properties the provider's `base_url` template names, each required by every kind (so a
    credential cannot be made without the account's host). A template in an OAuth URL would need
    the property before the connect flow starts: refused, not supported."""
    base_url = entry.get("base_url")
    names = template_properties(base_url)
    if names and not str(base_url).startswith("https://"):
        raise CatalogueError(f"{key}.base_url: a template must be an https:// URL")
    for kind in kinds.values():
        if missing := [name for name in names if name not in kind.required]:
            raise CatalogueError(f"{key}.credential_kinds.{kind.name}.required: must list {', '.join(missing)}, "
                                 f"which the base URL {base_url} is filled from")
    for url_key in ("authorization_url", "token_url"):
        if template_properties((entry.get("oauth") or {}).get(url_key)):
            raise CatalogueError(f"{key}.oauth.{url_key}: per-account OAuth URLs are not supported; leave "
                                 f"`oauth:` out (its tokens can be stored through the API)")
    return names


class ProviderCatalogue:
    def __init__(self, providers: dict[str, Provider]):
        self.providers = providers

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProviderCatalogue:
        """The catalogue `data` describes, checked whole: CatalogueError names the first entry
        Headwater cannot use by its path (`providers.github.collections.issue.read.list`)."""
        check_keys("catalogue", data, ("providers",))
        providers = {}
        for key, entry in check_keys("providers", data.get("providers"), data.get("providers") or {}).items():
            where = f"providers.{key}"
            check_keys(where, entry, PROVIDER_KEYS)
            for required in ("credential_kinds", "default_rate_limit"):
                if required not in entry:
                    raise CatalogueError(f"{where}: give `{required}`")
            _check_provider_types(where, entry)
            limits = check_keys(f"{where}.limits", entry.get("limits") or {}, Limits.KEYS)
            retry_spec = check_keys(f"{where}.retry", entry.get("retry") or {}, RetryPolicy.KEYS)
            retry = RetryPolicy.parse(f"{where}.retry", retry_spec)
            provider_limits = Limits.parse(f"{where}.limits", limits)  # before the kinds that build on it
            kinds = {
                kind: CredentialKind.parse(f"{where}.credential_kinds.{kind}", kind, spec, limits, retry_spec)
                for kind, spec in check_keys(f"{where}.credential_kinds", entry["credential_kinds"],
                                             entry["credential_kinds"]).items()
            }
            collections = {}
            # What the provider's `retry:` says of errors and deduplication, its `write:` block, then the collection's.
            write_defaults = {
                **{k: v for k, v in (("error_message", retry.error_message),
                                     ("idempotency_header", retry.idempotency_header)) if v},
                **(entry.get("write") or {}),
            }
            for ckey, spec in (entry.get("collections") or {}).items():
                cwhere = f"{where}.collections.{ckey}"
                spec = dict(check_keys(cwhere, spec or {}, COLLECTION_KEYS))
                read = spec.pop("read", None)
                write = spec.pop("write", None)
                collections[ckey] = Collection(
                    id=f"{key}:{ckey}", provider=key, key=ckey, name=spec.pop("name", ckey), spec=spec,
                    read=ReadSpec.parse(f"{cwhere}.read", read) if read else None,
                    write=WriteSpec.parse(f"{cwhere}.write", {**write_defaults, **write}) if write else None,
                )
            providers[key] = Provider(
                key=key,
                name=entry.get("name", key),
                base_url=entry.get("base_url"),
                permitted_hosts=tuple(entry.get("permitted_hosts", ())),
                default_rate_limit=RateLimitDefault.parse(f"{where}.default_rate_limit", entry["default_rate_limit"]),
                headers=dict(entry.get("headers") or {}),
                credential_kinds=kinds,
                oauth=_oauth(key, entry, kinds),
                collections=collections,
                limits=provider_limits,
                retry=retry,
                template_properties=_templates(key, entry, kinds),
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
