"""Organisations, API tokens, and who is calling.

Every RPC, over gRPC or REST, starts with `await auth.org_id(context)`: the API token in the
`authorization` metadata (an HTTP header over REST) names exactly one organisation. Tokens are
stored as SHA-256 hashes; the plaintext is shown once, when it is issued.
"""

from __future__ import annotations

from headwater.cache import TtlCache
from headwater.crypto import hash_token, new_token
from headwater.errors import unauthenticated
from headwater.store import ApiToken, Org, Store


_UNKNOWN = object()
# `Authorization: Bearer T`, or `token T` as SDKs written for GitHub's API send it; any case.
TOKEN_SCHEMES = ("bearer", "token")


class Auth:
    # A token's organisation is remembered this long, so the proxy's hot path skips the database.
    CACHE_SECONDS = 2.0

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
                row = ApiToken.select(ApiToken.org).where(ApiToken.token_hash == hash_token(token)).first()
                return row.org_id if row else None

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
