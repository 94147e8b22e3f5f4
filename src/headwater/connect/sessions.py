"""Connect sessions: who may connect which integrations, and where the browser goes back to.

    settings_violations(["https://app.example.com"])          # [] : origins the org allows
    origin_of("https://app.example.com:443/done?x=1")         # "https://app.example.com"
    options = connect_options(catalogue, apps, org_id, "github")  # how the page can connect it

A session's token is random (`secrets.token_urlsafe`), answered once and kept only as its hash;
opening the page spends it (see headwater.connect.flow). Everything here that reads the store runs
inside `store.run`.
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from headwater.store import utcnow
from headwater.store.models import ConnectSession, ConnectSettings, OAuthApp
from headwater.upstream.catalogue import BASE_URL_PROPERTY, CredentialKind, Provider, ProviderCatalogue
from headwater.upstream.oauth_apps import OAuthAppClient, OAuthApps, instance_app_id
from headwater.upstream.requests import url_problem

MAX_ORIGINS = 100
MAX_INTEGRATIONS = 50
DEFAULT_PORTS = {"http": 80, "https": 443}
# Sessions are removed this long after they expire (when the next session is created).
KEEP_EXPIRED = datetime.timedelta(days=1)


def token_hash(token: str) -> str:
    """How a session token, a browser's cookie or an OAuth `state` is kept: 256 random bits, so a
    fast hash suffices (as for API tokens)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def origin_of(url: str) -> str | None:
    """The URL's origin as browsers compare them (`scheme://host[:port]`, lower case, the default
    port left out), or None when it is no absolute http(s) URL."""
    if url_problem(url):
        return None
    parts = urlsplit(url)
    scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" if port in (None, DEFAULT_PORTS[scheme]) else f"{scheme}://{host}:{port}"


def origin_problem(origin: str) -> str | None:
    """What keeps `origin` from being an allowed redirect origin (None: nothing)."""
    parts = urlsplit(origin)
    if origin_of(origin) is None:
        return "must be an http:// or https:// origin, e.g. https://app.example.com"
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        return "must be an origin alone (scheme, host and port): no path, query or user information"
    return None


def settings_violations(origins: list[str]) -> list[tuple[str, str]]:
    violations = [
        (f"settings.allowed_redirect_origins[{i}]", problem)
        for i, origin in enumerate(origins) if (problem := origin_problem(origin))
    ]
    if len(origins) > MAX_ORIGINS:
        violations.append(("settings.allowed_redirect_origins", f"lists more than {MAX_ORIGINS} origins"))
    return violations


def allowed_origins(org_id: str) -> list[str]:
    row = ConnectSettings.get_or_none(ConnectSettings.org == org_id)
    return list(row.allowed_redirect_origins) if row else []


def redirect_problem(org_id: str, redirect_url: str) -> str | None:
    """Why a session may not send the browser back to `redirect_url` (in `store.run`)."""
    if not redirect_url:
        return "is required: where the browser goes back to once the account is connected"
    origin = origin_of(redirect_url)
    if origin is None or "@" in urlsplit(redirect_url).netloc or urlsplit(redirect_url).fragment:
        return "must be an absolute http:// or https:// URL without user information or fragment"
    if origin not in {origin_of(o) for o in allowed_origins(org_id)}:
        return (f"its origin {origin} is not one of the organisation's allowed redirect origins "
                "(PATCH /v1/connect/settings)")
    return None


@dataclass(frozen=True)
class ConnectOptions:
    """How the page can connect one integration: through an OAuth app, or a form per credential
    kind whose key is typed in and checked by the kind's verification request."""

    provider: Provider
    oauth_app: OAuthAppClient | None = None
    forms: tuple[CredentialKind, ...] = field(default=())

    @property
    def possible(self) -> bool:
        return self.oauth_app is not None or bool(self.forms)


def oauth_app_for(apps: OAuthApps, org_id: str, provider: Provider) -> OAuthAppClient | None:
    """The app a connection of `provider` goes through: the organisation's newest app of the
    provider, else the instance's (`headwater:<provider>`); None without either, or when the
    provider has no OAuth flow."""
    if provider.oauth is None:
        return None
    row = (OAuthApp.select().where((OAuthApp.org == org_id) & (OAuthApp.provider == provider.key))
           .order_by(OAuthApp.created_at.desc(), OAuthApp.id.desc()).first())
    return apps.client(row) if row else apps.find(org_id, instance_app_id(provider.key))


def connect_options(catalogue: ProviderCatalogue, apps: OAuthApps, org_id: str, integration: str) -> ConnectOptions | None:
    """How `integration` can be connected for the organisation; None for no such provider."""
    provider = catalogue.provider(integration)
    if provider is None:
        return None
    forms = tuple(kind for kind in provider.credential_kinds.values() if kind.verification is not None)
    return ConnectOptions(provider, oauth_app_for(apps, org_id, provider), forms)


def integrations_violations(
    catalogue: ProviderCatalogue, apps: OAuthApps, org_id: str, integrations: list[str], field: str
) -> list[tuple[str, str]]:
    """What keeps the page from offering each of `integrations` (in `store.run`)."""
    if len(integrations) > MAX_INTEGRATIONS:
        return [(field, f"lists more than {MAX_INTEGRATIONS} integrations")]
    violations = []
    for i, integration in enumerate(integrations):
        options = connect_options(catalogue, apps, org_id, integration)
        where = f"{field}[{i}]"
        if options is None:
            violations.append((where, f"unknown integration {integration!r}; use one of: {', '.join(sorted(catalogue.providers))}"))
        elif not options.possible:
            how = ("register an OAuth app of it first (POST /v1/oauth-apps)" if options.provider.oauth
                   else "it has neither an OAuth flow nor a key Headwater can check")
            violations.append((where, f"{integration} cannot be connected here: {how}"))
    return violations


def connectable(catalogue: ProviderCatalogue, apps: OAuthApps, org_id: str) -> list[str]:
    """Every integration the organisation's page can connect (a session that names none)."""
    return [key for key in catalogue.providers if connect_options(catalogue, apps, org_id, key).possible]


def properties_violations(
    catalogue: ProviderCatalogue, integrations: list[str], preset: dict[str, dict], field: str
) -> list[tuple[str, str]]:
    """What is wrong with a session's `integration_properties`: they name integrations it offers
    and hold no secret (a secret is typed in by the end user or issued by the provider)."""
    violations = []
    for integration, properties in preset.items():
        where = f"{field}[{integration!r}]"
        provider = catalogue.provider(integration)
        if integration not in integrations or provider is None:
            violations.append((where, "names an integration the session does not offer"))
            continue
        secret = set().union(*(kind.secret for kind in provider.credential_kinds.values()))
        for name, value in properties.items():
            if name == "kind" or name in secret:
                violations.append((f"{where}.{name}", "cannot be preset: the connection itself sets it"))
            elif name in (BASE_URL_PROPERTY, "instance_url") and (
                    not isinstance(value, str) or url_problem(value)):
                violations.append((f"{where}.{name}", "must be an absolute http:// or https:// URL"))
    return violations


def new_session(org_id: str, end_user, integrations: list[str], redirect_url: str, preset: dict[str, dict],
                lifetime: float, project_id: str = "") -> tuple[ConnectSession, str]:
    """Stores a session (in `store.run`, its input checked); returns it and its token, which
    exists only in this answer. Sessions expired a day ago are removed on the way."""
    now = utcnow()
    ConnectSession.delete().where(ConnectSession.expires_at < now - KEEP_EXPIRED).execute()
    token = new_secret()
    row = ConnectSession.create(
        org=org_id, token_hash=token_hash(token), csrf_token=new_secret(),
        end_user_id=end_user.id, end_user_email=end_user.email, end_user_display_name=end_user.display_name,
        allowed_integrations=integrations, integration_properties=preset, redirect_url=redirect_url,
        project_id=project_id, expires_at=now + datetime.timedelta(seconds=lifetime), created_at=now,
    )
    return row, token
