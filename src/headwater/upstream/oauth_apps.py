"""OAuth apps: the client id and secret through which an account is connected and refreshed.

An app is either an organisation's (kind `custom`: a row of /v1/oauth-apps, its secret
encrypted) or the instance's default app of a provider (kind `headwater`: configured by the
operator in HEADWATER_OAUTH_APPS, named "headwater:<provider>"). A credential names one with
`oauth_app_id`.

    apps = OAuthApps(box, catalogue, settings.oauth_apps)
    app = apps.find(org_id, credential.oauth_app_id)         # in store.run; None: no such app
    app.client_id, app.client_secret, app.token_url
    apps.problem(org_id, "github", oauth_app_id)             # why a credential may not name it

Every method that reads the store runs inside `store.run`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from headwater.crypto import SecretBox
from headwater.errors import shown
from headwater.settings import ConfigError, InstanceOAuthApp
from headwater.store.models import OAuthApp
from headwater.upstream.catalogue import ProviderCatalogue

INSTANCE_APP_PREFIX = "headwater:"
CUSTOM = "custom"  # an organisation's own app
INSTANCE = "headwater"  # the instance's default app of a provider


@dataclass(frozen=True)
class OAuthAppClient:
    """An app as a connection or a refresh uses it: the client it authenticates as, and where."""

    id: str
    kind: str  # CUSTOM | INSTANCE
    provider: str
    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...] = ()
    authorization_url: str | None = None  # None: the provider's (the catalogue's)
    token_url: str | None = None


def instance_app_id(provider: str) -> str:
    return INSTANCE_APP_PREFIX + provider


class OAuthApps:
    def __init__(self, box: SecretBox, catalogue: ProviderCatalogue, instance_apps: dict[str, InstanceOAuthApp]):
        unknown = sorted(set(instance_apps) - set(catalogue.providers))
        if unknown:
            raise ConfigError(f"HEADWATER_OAUTH_APPS names providers the catalogue does not have: {', '.join(unknown)}")
        self.box = box
        self._instance = {
            instance_app_id(app.provider): OAuthAppClient(
                instance_app_id(app.provider), INSTANCE, app.provider, app.client_id, app.client_secret,
                app.scopes, app.authorization_url, app.token_url,
            )
            for app in instance_apps.values()
        }

    def find(self, org_id: str, app_id: str) -> OAuthAppClient | None:
        """The app `app_id` names for the organisation (its own, or the instance's), or None."""
        return self.find_all(org_id, [app_id]).get(app_id)

    def find_all(self, org_id: str, app_ids: Iterable[str], lock: bool = False) -> dict[str, OAuthAppClient]:
        """The apps of `app_ids` that exist for the organisation, by id (one query for a page).
        `lock` (PostgreSQL): hold their rows FOR SHARE until the transaction ends, so that an app a
        credential is about to name cannot be deleted meanwhile (the delete locks it FOR UPDATE)."""
        wanted = {app_id for app_id in app_ids if app_id}
        found = {app_id: self._instance[app_id] for app_id in wanted if app_id in self._instance}
        own = wanted - set(found)
        if own:
            rows = OAuthApp.select().where((OAuthApp.id.in_(list(own))) & (OAuthApp.org == org_id))
            found |= {row.id: self.client(row) for row in (rows.for_update("FOR SHARE") if lock else rows)}
        return found

    def client(self, row: OAuthApp) -> OAuthAppClient:
        return OAuthAppClient(
            row.id, CUSTOM, row.provider, row.client_id, self.box.decrypt(row.client_secret),
            tuple(row.scopes), row.authorization_url or None, row.token_url or None,
        )

    def problem(self, org_id: str, provider: str, app_id: str, lock: bool = False) -> str | None:
        """Why a credential of `provider` may not name `app_id` (None: it may; "" names none).
        `lock`: as `find_all`'s, for the transaction that then stores the credential."""
        if not app_id:
            return None
        app = self.find_all(org_id, [app_id], lock).get(app_id)
        if app is None:
            if app_id.startswith(INSTANCE_APP_PREFIX):
                return f"this instance has no default OAuth app {shown(app_id)} (HEADWATER_OAUTH_APPS)"
            return f"no OAuth app {shown(app_id)} in this organisation"
        if app.provider != provider:
            return f"is a {app.provider} app, not {provider}"
        return None
