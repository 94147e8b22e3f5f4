"""CredentialService: provider accounts, their secrets encrypted at rest and never shown."""

from __future__ import annotations

import datetime

import grpc

from headwater.crypto import SECRET_MASK
from headwater.errors import ApiError, failed_precondition, invalid, not_found, raise_if_invalid
from headwater.services._common import (
    Backend,
    paginate,
    struct,
    struct_dict,
    timestamp,
    update_paths,
)
from headwater.services.oauth_apps import app_summary
from headwater.store import Credential, Sync, utcnow
from headwater.store.health import credential_healthy
from headwater.upstream.accounts import open_properties, seal_properties
from headwater.upstream.budget import BudgetState, PacerUnavailable
from headwater.upstream.catalogue import BASE_URL_PROPERTY, CredentialKind, ProviderCatalogue
from headwater.upstream.oauth_apps import OAuthAppClient
from headwater.upstream.requests import url_problem
from headwater.v1 import credential_pb2, credential_pb2_grpc

# Fields a caller may set; the rest of Credential is output only.
UPDATABLE = {"properties", "oauth_app_id", "metadata", "external_id"}
OUTPUT_ONLY = {"id", "org_id", "oauth_app", "health", "created_at", "updated_at"}


class CredentialInput:
    """A credential as validated from a request: its provider, its kind and every property
    (stored with `seal_properties`, which keeps the kind's secrets encrypted)."""

    def __init__(self, provider: str, kind: CredentialKind, properties: dict):
        self.provider = provider
        self.kind = kind
        self.properties = properties


def check_properties(
    catalogue: ProviderCatalogue, provider: str, properties: dict | None, field: str
) -> tuple[CredentialInput | None, list[tuple[str, str]]]:
    """Validates `properties` for a credential of `provider`; returns it and the violations."""
    spec = catalogue.provider(provider)
    if spec is None:
        return None, []  # the caller reports the provider itself
    if properties is None:
        return None, [(field, "is required, with at least `kind`")]
    kind = properties.get("kind")
    kinds = ", ".join(sorted(spec.credential_kinds))
    if not kind:
        return None, [(f"{field}.kind", f"is required; for {provider} one of: {kinds}")]
    if kind not in spec.credential_kinds:
        return None, [(f"{field}.kind", f"{kind!r} is not a credential kind of {provider}; use one of: {kinds}")]
    kind_spec = spec.credential_kinds[kind]
    violations = [
        (f"{field}.{name}", f"is required for kind {kind}")
        for name in kind_spec.required
        if properties.get(name) in (None, "")
    ]
    violations += spec.template_violations(properties, field)  # Shopify's `shop`: one host label
    own_base_url = [kind_spec.base_url_property] if kind_spec.base_url_property else []  # Salesforce's instance_url
    for name in (BASE_URL_PROPERTY, "token_url", *own_base_url):
        url = properties.get(name)
        if url is not None and (problem := url_problem(url) if isinstance(url, str) else "must be a string"):
            violations.append((f"{field}.{name}", problem))
    return CredentialInput(provider, kind_spec, properties), violations


def oauth_app_violations(backend: Backend, org_id: str, provider: str, app_id: str, field: str) -> list[tuple[str, str]]:
    """What is wrong with a credential of `provider` naming OAuth app `app_id` (in `store.run`):
    the app must be the organisation's, or the instance's default, and of the same provider."""
    problem = backend.oauth_apps.problem(org_id, provider, app_id, lock=backend.store.is_postgres)
    return [(field, problem)] if problem else []


def new_credential(backend: Backend, org_id: str, checked: CredentialInput, message) -> Credential:
    """Inserts a validated credential (inside the caller's transaction; its `oauth_app_id` checked
    with `oauth_app_violations`)."""
    row = Credential(
        org=org_id,
        provider=checked.provider,
        kind=checked.kind.name,
        oauth_app_id=message.oauth_app_id,
        metadata=struct_dict(message, "metadata"),
        external_id=message.external_id,
    )
    seal_properties(row, checked.kind, checked.properties, backend.box)
    row.save(force_insert=True)
    return row


def credential_to_proto(row: Credential, apps: dict[str, OAuthAppClient]) -> credential_pb2.Credential:
    """The answer for `row`; `apps` holds the OAuth app it names (OAuthApps.find_all), if found."""
    return credential_pb2.Credential(
        id=row.id,
        org_id=row.org_id,
        provider=row.provider,
        properties=struct(row.properties),
        oauth_app_id=row.oauth_app_id or None,  # unset strings answer null, not ""
        oauth_app=app_summary(row.oauth_app_id, row.provider, apps.get(row.oauth_app_id)),
        metadata=struct(row.metadata),
        external_id=row.external_id or None,
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
        health=credential_pb2.CredentialHealth(
            status=row.health_status,
            last_error=row.health_last_error or None,
            last_error_at=timestamp(row.health_last_error_at),
        ),
    )


def budget_to_proto(credential_id: str, cap: int, state: BudgetState) -> credential_pb2.GetCredentialBudgetResponse:
    answer = credential_pb2.GetCredentialBudgetResponse(
        credential_id=credential_id,
        windows=[
            credential_pb2.BudgetWindow(
                allowed_requests=w.limit, interval=round(w.interval), used=w.used, remaining=w.remaining,
                reset_seconds=round(w.reset, 3),
            )
            for w in state.windows
        ],
        waiting=state.waiting,
        in_flight=state.in_flight,
        max_concurrent_requests=cap,
    )
    if state.paused_for > 0:
        ends = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=state.paused_for)
        answer.pause.reason = state.pause_reason
        answer.pause.ends_at.FromDatetime(ends)
    return answer


def get_credential(org_id: str, credential_id: str) -> Credential:
    row = Credential.get_or_none((Credential.id == credential_id) & (Credential.org == org_id))
    if row is None:
        raise not_found("credential", credential_id)
    return row


class CredentialServicer(credential_pb2_grpc.CredentialServiceServicer):
    def __init__(self, backend: Backend):
        self.backend = backend

    async def CreateCredential(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        message = request.credential
        provider = message.provider
        checked, violations = check_properties(
            self.backend.catalogue, provider, struct_dict(message, "properties"), "credential.properties"
        )
        if not provider:
            violations.insert(0, ("credential.provider", "is required"))
        elif self.backend.catalogue.provider(provider) is None:
            violations.insert(0, ("credential.provider", f"unknown provider {provider!r}"))
        raise_if_invalid(violations)

        def create():
            raise_if_invalid(oauth_app_violations(
                self.backend, org_id, provider, message.oauth_app_id, "credential.oauth_app_id"
            ))
            row = new_credential(self.backend, org_id, checked, message)
            return row, self.backend.oauth_apps.find_all(org_id, [row.oauth_app_id])

        row, apps = await self.backend.store.run(create)
        return credential_pb2.CreateCredentialResponse(credential=credential_to_proto(row, apps))

    async def GetCredential(self, request, context):
        org_id = await self.backend.auth.org_id(context)

        def get():
            row = get_credential(org_id, request.id)
            return row, self.backend.oauth_apps.find_all(org_id, [row.oauth_app_id])

        row, apps = await self.backend.store.run(get)
        return credential_pb2.GetCredentialResponse(credential=credential_to_proto(row, apps))

    async def GetCredentialBudget(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        account = await self.backend.accounts.reload(org_id, request.id)
        try:
            state = await self.backend.upstream.pacer.state(account.credential_id, account.budget)
        except PacerUnavailable:
            raise ApiError(grpc.StatusCode.UNAVAILABLE, "the shared rate limiter is unavailable") from None
        return budget_to_proto(account.credential_id, account.budget.max_concurrent, state)

    async def ListCredentials(self, request, context):
        org_id = await self.backend.auth.org_id(context)

        def page():
            query = Credential.select().where(Credential.org == org_id)
            if request.provider:
                query = query.where(Credential.provider == request.provider)
            if request.external_id:
                query = query.where(Credential.external_id == request.external_id)
            rows, next_token = paginate(query, Credential, request)
            return rows, next_token, self.backend.oauth_apps.find_all(org_id, [r.oauth_app_id for r in rows])

        rows, next_token, apps = await self.backend.store.run(page)
        return credential_pb2.ListCredentialsResponse(
            data=[credential_to_proto(r, apps) for r in rows], next_page_token=next_token
        )

    async def UpdateCredential(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        message = request.credential
        tops = {p.split(".")[0] for p in update_paths(request.update_mask, message)}
        violations = []
        for top in sorted(tops - UPDATABLE):
            if top == "provider" and message.provider:
                continue  # checked against the stored value below
            if top in OUTPUT_ONLY:
                violations.append((f"credential.{top}", "is output only"))
            elif top != "provider":
                violations.append((f"credential.{top}", "is not a field of Credential"))
        raise_if_invalid(violations)

        def update():
            row = get_credential(org_id, request.id)
            if "provider" in tops and message.provider != row.provider:
                raise invalid("credential.provider", "cannot change; create a new credential instead")
            new_secrets = "properties" in tops and self._merge_properties(row, struct_dict(message, "properties") or {})
            if "oauth_app_id" in tops:
                raise_if_invalid(oauth_app_violations(
                    self.backend, org_id, row.provider, message.oauth_app_id, "credential.oauth_app_id"
                ))
                row.oauth_app_id = message.oauth_app_id
            if "metadata" in tops:
                row.metadata = struct_dict(message, "metadata")
            if "external_id" in tops:
                row.external_id = message.external_id
            row.updated_at = utcnow()
            row.save()
            if new_secrets:
                credential_healthy(row)  # new tokens (or a new client secret) may well work
            return row, self.backend.oauth_apps.find_all(org_id, [row.oauth_app_id])

        row, apps = await self.backend.store.run(update)
        self.backend.accounts.forget()
        return credential_pb2.UpdateCredentialResponse(credential=credential_to_proto(row, apps))

    def _merge_properties(self, row: Credential, changes: dict) -> bool:
        """PATCH semantics inside `properties`: keys sent replace, `null` removes, others stay.
        Returns whether a secret changed.

        A secret sent back as "***********" (as a GET shows it) keeps its stored value.
        """
        stored = open_properties(row, self.backend.box)
        merged = dict(stored)
        for key, value in changes.items():
            if value is None:
                merged.pop(key, None)
            elif value != SECRET_MASK:
                merged[key] = value
        checked, violations = check_properties(
            self.backend.catalogue, row.provider, merged, "credential.properties"
        )
        raise_if_invalid(violations)
        row.kind = checked.kind.name
        seal_properties(row, checked.kind, checked.properties, self.backend.box)
        return any(stored.get(name) != merged.get(name) for name in checked.kind.secret)

    async def DeleteCredential(self, request, context):
        org_id = await self.backend.auth.org_id(context)

        def delete():
            row = get_credential(org_id, request.id)
            users = [s.id for s in Sync.select(Sync.id).where(Sync.credential == row.id).limit(5)]
            if users:
                raise failed_precondition(
                    f"credential {row.id} is used by sync(s) {', '.join(users)}; "
                    "delete those syncs first"
                )
            row.delete_instance()

        await self.backend.store.run(delete)
        self.backend.accounts.forget()
        return credential_pb2.DeleteCredentialResponse(id=request.id, deleted=True)

