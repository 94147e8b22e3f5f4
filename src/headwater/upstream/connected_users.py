"""Connected users: a project's user token (an RS256 JWT) selects that user's credential.

    GET /projects/{project_id}/sdk/proxy/salesforce/services/data/v59.0/sobjects/Contact
    Authorization: Bearer <JWT signed with the project's private key, sub = the user's id>

The integration names the credential's provider ("salesforce", "slack"); `custom.NAME` and
`custom/{integration_id}` name a `custom` credential whose `integration` or `integration_id`
property matches. Among those, the user's credential is the one whose `external_id` is the
token's `sub`.
"""

from __future__ import annotations

import jwt

from headwater.cache import TtlCache
from headwater.errors import invalid, not_found, unauthenticated
from headwater.inputs import string_problem
from headwater.store import Credential, Project, Store
from headwater.upstream.accounts import Accounts, UpstreamAccount

# Clock skew tolerated between the application that signs tokens and this server.
LEEWAY_SECONDS = 30


def users_credential(org_id: str, provider: str, user_id: str) -> Credential | None:
    """The user's credential of `provider`: the newest whose external_id is the user's id (in
    `store.run`). The hosted connect page replaces this one when the user connects again."""
    return (Credential.select()
            .where((Credential.org == org_id) & (Credential.provider == provider)
                   & (Credential.external_id == user_id))
            .order_by(Credential.created_at.desc()).first())


class ConnectedUsers:
    def __init__(self, store: Store, accounts: Accounts, ttl: float = 2.0):
        self.store = store
        self.accounts = accounts
        self._projects: TtlCache[tuple[str, str] | None] = TtlCache(ttl)  # id -> (org id, public key)

    def forget(self) -> None:
        self._projects.clear()

    async def user(self, project_id: str, context) -> tuple[str, str]:
        """(organisation id, user id) of the call's user token for the project, or UNAUTHENTICATED."""
        org_id, public_key = await self._project(project_id)
        return org_id, self._verify(context, public_key, project_id)

    async def account(self, target, context) -> UpstreamAccount:
        """The account of the user named by the call's token, for `target`'s integration."""
        org_id, user_id = await self.user(target.project_id, context)
        integration, integration_id = target.integration, target.integration_id
        if not integration and not integration_id:
            raise invalid("connected_user.integration", "is required")

        def find() -> str | None:
            if integration_id or integration.startswith("custom."):
                wanted = ("integration_id", integration_id) if integration_id else (
                    "integration", integration.removeprefix("custom."))
                rows = Credential.select().where(
                    (Credential.org == org_id) & (Credential.provider == "custom")
                    & (Credential.external_id == user_id)
                ).order_by(Credential.created_at.desc())
                return next((r.id for r in rows if r.properties.get(wanted[0]) == wanted[1]), None)
            row = users_credential(org_id, integration, user_id)
            return row.id if row else None

        # A `sub` no external_id can hold (a NUL, longer than the column) names nobody's account.
        credential_id = None if string_problem(user_id) else await self.store.run(find)
        if credential_id is None:
            name = integration_id or integration
            raise not_found(f"{name} account of connected user", user_id)
        return await self.accounts.for_credential(org_id, credential_id)

    async def _project(self, project_id: str) -> tuple[str, str]:
        def load():
            row = Project.get_or_none(Project.id == project_id)
            return (row.org_id, row.signing_public_key) if row else None

        found = await self._projects.get(project_id, lambda: self.store.run(load))
        if found is None:
            # Same answer as a bad token: a caller without a valid token learns nothing.
            raise unauthenticated("the user token is not valid for this project")
        return found

    @staticmethod
    def _verify(context, public_key: str, project_id: str) -> str:
        header = dict(context.invocation_metadata() or ()).get("authorization", "")
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise unauthenticated("a user token is required: Authorization: Bearer <JWT>")
        try:
            claims = jwt.decode(
                token.strip(), public_key, algorithms=["RS256"], leeway=LEEWAY_SECONDS,
                options={"require": ["sub", "exp"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise unauthenticated("the user token has expired") from None
        except jwt.InvalidTokenError:
            raise unauthenticated("the user token is not valid for this project") from None
        return str(claims["sub"])
