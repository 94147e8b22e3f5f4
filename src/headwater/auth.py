"""Organisations, API tokens, and who is calling.

Every RPC, over gRPC or REST, starts with `await auth.org_id(context)`: the API token in the
`authorization` metadata (an HTTP header over REST) names exactly one organisation. Tokens are
stored as SHA-256 hashes; the plaintext is shown once, when it is issued.

A token's organisation is cached for CACHE_SECONDS, so a token revoked by another process (the
CLI) is refused within that time. A token's last use is written when the cache misses and the
stored one is over LAST_USE_PRECISION old: at most once a minute per token, never per request.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from peewee import JOIN, fn

from headwater.cache import TtlCache
from headwater.crypto import hash_token, new_token
from headwater.errors import unauthenticated
from headwater.store import ApiToken, Org, Store, utcnow


_UNKNOWN = object()
# `Authorization: Bearer T`, or `token T` as SDKs written for GitHub's API send it; any case.
TOKEN_SCHEMES = ("bearer", "token")


@dataclass(frozen=True)
class OrgSummary:
    id: str
    name: str
    created_at: datetime.datetime
    tokens: int


@dataclass(frozen=True)
class TokenSummary:
    """What may be shown of an API token: never the token, nor its hash."""

    id: str
    name: str
    org: str  # the organisation's name
    created_at: datetime.datetime
    last_used_at: datetime.datetime | None


class Auth:
    # A token's organisation is remembered this long, so the proxy's hot path skips the database.
    CACHE_SECONDS = 2.0
    LAST_USE_PRECISION = datetime.timedelta(minutes=1)

    def __init__(self, store: Store):
        self.store = store
        self._known: TtlCache[str | None] = TtlCache(self.CACHE_SECONDS)  # token -> org id (memory only)

    async def org_id(self, context) -> str:
        """The organisation of the caller's token, or UNAUTHENTICATED."""
        header = ""
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":  # metadata keys are lower-case, over gRPC and REST alike
                header = value
                break
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() not in TOKEN_SCHEMES or not token:
            raise unauthenticated()

        org_id = self._known.peek(token, _UNKNOWN)
        if org_id is _UNKNOWN:

            def lookup():
                row = ApiToken.get_or_none(ApiToken.token_hash == hash_token(token))
                if row is None:
                    return None
                now = utcnow()
                if row.last_used_at is None or now - row.last_used_at >= self.LAST_USE_PRECISION:
                    ApiToken.update(last_used_at=now).where(ApiToken.id == row.id).execute()
                return row.org_id

            org_id = await self._known.get(token, lambda: self.store.run(lookup))
        if org_id is None:
            raise unauthenticated("the API token is not valid")
        return org_id

    async def create_org(self, name: str) -> Org:
        return await self.store.run(lambda: Org.create(name=name))

    async def issue_token(self, org_name: str, token_name: str = "") -> str:
        """A new token for the named organisation; the only time its plaintext exists."""
        token = new_token()

        def issue():
            org = Org.get_or_none(Org.name == org_name)
            if org is None:
                raise LookupError(f"no organisation named {org_name!r}")
            ApiToken.create(org=org, token_hash=hash_token(token), name=token_name)

        await self.store.run(issue)
        return token

    async def list_orgs(self) -> list[OrgSummary]:
        """Every organisation, oldest first, with how many API tokens it has."""

        def orgs():
            rows = (
                Org.select(Org, fn.COUNT(ApiToken.id).alias("tokens"))
                .join(ApiToken, JOIN.LEFT_OUTER)
                .group_by(Org.id)
                .order_by(Org.created_at, Org.name)
            )
            return [OrgSummary(o.id, o.name, o.created_at, o.tokens) for o in rows]

        return await self.store.run(orgs)

    async def list_tokens(self, org_name: str | None = None) -> list[TokenSummary]:
        """The API tokens, of one organisation or of all, oldest first."""

        def tokens():
            query = ApiToken.select(ApiToken, Org.name).join(Org)
            if org_name is not None:
                if not Org.select().where(Org.name == org_name).exists():
                    raise LookupError(f"no organisation named {org_name!r}")
                query = query.where(Org.name == org_name)
            return [
                TokenSummary(t.id, t.name, t.org.name, t.created_at, t.last_used_at)
                for t in query.order_by(ApiToken.created_at, ApiToken.id)
            ]

        return await self.store.run(tokens)

    async def revoke_token(self, token_id: str) -> None:
        """Deletes the token: refused at once by this process, within CACHE_SECONDS by others."""

        def revoke():
            if not ApiToken.delete().where(ApiToken.id == token_id).execute():
                raise LookupError(f"no API token with id {token_id!r}")

        await self.store.run(revoke)
        self._known.clear()

    async def bootstrap(self, org_name: str = "default") -> str | None:
        """On an empty database: a first organisation and a token for it. Otherwise None."""

        def first_org():
            if Org.select().exists():
                return False
            Org.create(name=org_name)
            return True

        if not await self.store.run(first_org):
            return None
        return await self.issue_token(org_name, "first token")
