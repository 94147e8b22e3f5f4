"""OAuthAppService: an organisation's OAuth apps, their client secrets encrypted and never shown."""

from __future__ import annotations

from headwater.crypto import SECRET_MASK
from headwater.errors import failed_precondition, not_found, raise_if_invalid
from headwater.services._common import Backend, page_violations, paginate, struct, struct_dict, timestamp, update_paths
from headwater.store import Credential, utcnow
from headwater.store.health import credential_healthy
from headwater.store.models import OAuthApp
from headwater.upstream.oauth_apps import CUSTOM, INSTANCE, INSTANCE_APP_PREFIX, OAuthAppClient
from headwater.upstream.requests import url_problem
from headwater.v1 import credential_pb2, oauth_app_pb2, oauth_app_pb2_grpc

UPDATABLE = {"client_id", "client_secret", "scopes", "authorization_url", "token_url", "metadata"}
OUTPUT_ONLY = {"id", "org_id", "created_at", "updated_at"}
URLS = ("authorization_url", "token_url")
MAX_SCOPES = 100
# Credentials a refused delete names, at most.
NAMED_USERS = 5


def app_to_proto(row: OAuthApp) -> oauth_app_pb2.OAuthClient:
    return oauth_app_pb2.OAuthClient(
        id=row.id, org_id=row.org_id, provider=row.provider, client_id=row.client_id, client_secret=SECRET_MASK,
        scopes=row.scopes, authorization_url=row.authorization_url or None, token_url=row.token_url or None,
        metadata=struct(row.metadata), created_at=timestamp(row.created_at), updated_at=timestamp(row.updated_at),
    )


def app_summary(app_id: str, provider: str, app: OAuthAppClient | None) -> credential_pb2.OAuthApp | None:
    """What a credential's answer shows of the app it names (`app`: as found, None if gone)."""
    if not app_id:
        return None
    if app is None:  # the operator no longer configures the instance's app (an own app cannot go)
        kind = INSTANCE if app_id.startswith(INSTANCE_APP_PREFIX) else CUSTOM
        return credential_pb2.OAuthApp(id=app_id, kind=kind, provider=provider)
    return credential_pb2.OAuthApp(id=app.id, kind=app.kind, provider=app.provider, client_id=app.client_id)


def get_app(org_id: str, app_id: str, lock: bool = False) -> OAuthApp:
    """The organisation's app (in `store.run`); `lock` (PostgreSQL): FOR UPDATE, until the
    transaction ends (a credential naming it meanwhile waits, see OAuthApps.find_all)."""
    query = OAuthApp.select().where((OAuthApp.id == app_id) & (OAuthApp.org == org_id))
    row = (query.for_update() if lock else query).get_or_none()
    if row is None:
        raise not_found("OAuth app", app_id)
    return row


def check_app(backend: Backend, message: oauth_app_pb2.OAuthClient, tops: set[str]) -> list[tuple[str, str]]:
    """What is wrong with the fields of `message` named in `tops` (all of them for a create)."""
    violations = []
    provider = backend.catalogue.provider(message.provider)
    if "provider" in tops:
        if not message.provider:
            violations.append(("oauth_app.provider", "is required"))
        elif provider is None:
            known = ", ".join(sorted(backend.catalogue.providers))
            violations.append(("oauth_app.provider", f"unknown provider {message.provider!r}; use one of: {known}"))
    for name in ("client_id", "client_secret"):
        if name in tops and not getattr(message, name):
            violations.append((f"oauth_app.{name}", "is required: the provider issued it with the app"))
    if "scopes" in tops:
        if len(message.scopes) > MAX_SCOPES:
            violations.append(("oauth_app.scopes", f"lists more than {MAX_SCOPES} scopes"))
        for i, scope in enumerate(message.scopes):
            if not scope or any(c.isspace() for c in scope):
                violations.append((f"oauth_app.scopes[{i}]", "must be one scope: not empty, no spaces"))
    for name in URLS:
        url = getattr(message, name)
        if name in tops and url and (problem := url_problem(url)):
            violations.append((f"oauth_app.{name}", problem))
    if provider is not None and provider.oauth is None:  # a custom API: nothing to fall back on
        violations += [
            (f"oauth_app.{name}", f"is required: {provider.key} has no OAuth URLs of its own")
            for name in URLS if not getattr(message, name)
        ]
    return violations


class OAuthAppServicer(oauth_app_pb2_grpc.OAuthAppServiceServicer):
    def __init__(self, backend: Backend):
        self.backend = backend

    async def CreateOAuthApp(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        message = request.oauth_app
        raise_if_invalid(check_app(self.backend, message, {"provider", *UPDATABLE}))

        def create():
            return OAuthApp.create(
                org=org_id, provider=message.provider, client_id=message.client_id,
                client_secret=self.backend.box.encrypt(message.client_secret), scopes=list(message.scopes),
                authorization_url=message.authorization_url, token_url=message.token_url,
                metadata=struct_dict(message, "metadata"),
            )

        row = await self.backend.store.run(create)
        return oauth_app_pb2.CreateOAuthAppResponse(oauth_app=app_to_proto(row))

    async def GetOAuthApp(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        row = await self.backend.store.run(get_app, org_id, request.id)
        return oauth_app_pb2.GetOAuthAppResponse(oauth_app=app_to_proto(row))

    async def ListOAuthApps(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        raise_if_invalid(page_violations(request))

        def page():
            query = OAuthApp.select().where(OAuthApp.org == org_id)
            if request.provider:
                query = query.where(OAuthApp.provider == request.provider)
            if request.client_id:
                query = query.where(OAuthApp.client_id == request.client_id)
            return paginate(query, OAuthApp, request)

        rows, next_token = await self.backend.store.run(page)
        return oauth_app_pb2.ListOAuthAppsResponse(data=[app_to_proto(r) for r in rows], next_page_token=next_token)

    async def UpdateOAuthApp(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        message = request.oauth_app
        tops = {p.split(".")[0] for p in update_paths(request.update_mask, message)}

        def update():
            row = get_app(org_id, request.id)
            violations = []
            for top in sorted(tops - UPDATABLE):
                if top == "provider" and message.provider != row.provider:
                    violations.append(("oauth_app.provider", "cannot change; create a new app instead"))
                elif top in OUTPUT_ONLY:
                    violations.append((f"oauth_app.{top}", "is output only"))
                elif top != "provider":
                    violations.append((f"oauth_app.{top}", "is not a field of OAuthClient"))
            # The app as it would be, checked whole (a custom API's app keeps both its URLs).
            merged = app_to_proto(row)  # its client_secret the mask: kept unless another is sent
            for name in tops & UPDATABLE:
                merged.ClearField(name)
                if name == "scopes":
                    merged.scopes.extend(message.scopes)
                elif name == "metadata":
                    if message.HasField("metadata"):
                        merged.metadata.CopyFrom(message.metadata)
                elif getattr(message, name):
                    setattr(merged, name, getattr(message, name))
            raise_if_invalid(violations + check_app(self.backend, merged, tops & UPDATABLE))
            if merged.client_secret != SECRET_MASK:
                row.client_secret = self.backend.box.encrypt(message.client_secret)
            row.client_id = merged.client_id
            row.scopes = list(merged.scopes)
            row.authorization_url = merged.authorization_url
            row.token_url = merged.token_url
            row.metadata = struct_dict(merged, "metadata")
            row.updated_at = utcnow()
            row.save()
            if tops & {"client_id", "client_secret", "token_url"}:
                # A fixed client may well make refused refreshes work: they are tried again at once.
                for credential in Credential.select().where(
                    (Credential.org == org_id) & (Credential.oauth_app_id == row.id)
                ):
                    credential_healthy(credential)
            return row

        row = await self.backend.store.run(update)
        self.backend.accounts.forget()  # refreshes use the app's new client or token URL at once
        return oauth_app_pb2.UpdateOAuthAppResponse(oauth_app=app_to_proto(row))

    async def DeleteOAuthApp(self, request, context):
        org_id = await self.backend.auth.org_id(context)

        def delete():
            row = get_app(org_id, request.id, lock=self.backend.store.is_postgres)
            users = Credential.select(Credential.id).where(
                (Credential.org == org_id) & (Credential.oauth_app_id == row.id)
            ).order_by(Credential.created_at, Credential.id)
            named = [c.id for c in users.limit(NAMED_USERS + 1)]
            if named:
                more = ", ..." if len(named) > NAMED_USERS else ""
                raise failed_precondition(
                    f"OAuth app {row.id} is used by credential(s) {', '.join(named[:NAMED_USERS])}{more}; "
                    "delete them or give them another oauth_app_id first"
                )
            row.delete_instance()

        await self.backend.store.run(delete)
        return oauth_app_pb2.DeleteOAuthAppResponse(id=request.id, deleted=True)
