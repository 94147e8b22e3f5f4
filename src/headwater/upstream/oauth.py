"""OAuth2 token refresh: before the access token expires, and once when the upstream answers 401.

A credential can be refreshed when it has a `refresh_token` property. The token endpoint is its
`token_url` property, else its OAuth app's (`oauth_app_id`), else its provider's (the catalogue's
`oauth.token_url`). The client authenticates as the credential's own `client_id` / `client_secret`
when it has them (tokens imported from elsewhere were issued to that client), else as its OAuth
app. The request and the answer are authlib's (headwater.upstream.token_client). The new tokens
are stored encrypted like every secret, with `expires_at` (seconds since the epoch) from the
answer's `expires_in`, and the provider's per-account properties (the catalogue's
`oauth.account_properties`: Salesforce's `instance_url`).

One refresh at a time per credential: concurrent callers wait for the refresh in flight and use
its result instead of starting their own (providers that rotate refresh tokens invalidate the old
one on first use, so a second refresh would fail). Within a process the refresh is one shared task
per credential; across processes on PostgreSQL, a transaction-scoped advisory lock on the
credential serializes them (the refresh holds one database connection for its duration, at most
REFRESH_TIMEOUT_SECONDS). SQLite is the one-process deployment, so the shared task is all it needs.

Each caller waits for the refresh at most until its own deadline (then: 504, "<Provider> API timed
out"); giving up does not cancel the refresh, which the other callers, and later ones, still use.

A refresh the token endpoint refuses (400, 401 or 403, or an OAuth `error` such as invalid_grant)
is refused for good: the caller gets 401 saying to reconnect the account, the credential's health
becomes `error` (headwater.store.health, which tells its syncs and the organisation's event
endpoints), and for `refused_retry_seconds` (60) its calls get that answer at once rather than ask
the token endpoint again. A token endpoint that cannot answer (5xx, 429, a timeout) is no refusal:
the caller gets 502 and the next call tries again.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

import grpc
from playhouse.pwasyncio import await_

from headwater.cache import TtlCache
from headwater.crypto import SecretBox
from headwater.errors import ApiError
from headwater.store import Credential, Store, utcnow
from headwater.store.health import credential_healthy, refresh_refused
from headwater.upstream.account_facts import account_properties
from headwater.upstream.accounts import Accounts, UpstreamAccount, open_properties, seal_properties
from headwater.upstream.forwarder import Forwarder
from headwater.upstream.token_client import OAuth2Error, TokenClient, TokenEndpointFailed

log = logging.getLogger("headwater.oauth")

# Refresh this long before the access token expires.
EXPIRY_MARGIN_SECONDS = 60
REFRESH_TIMEOUT_SECONDS = 15
# Token endpoint answers that refuse a refresh token for good (RFC 6749 5.2: 400, or 401 for a
# client that failed to authenticate; some providers say 403).
REFUSING_STATUSES = frozenset({400, 401, 403})
OAUTH_ERROR_CODE = re.compile(r"[a-z_]{1,40}")  # RFC 6749 5.2's `error` values: invalid_grant, ...


class RefreshRefused(ApiError):
    """The token endpoint refused the refresh token: only new tokens (a reconnected account, a
    PATCH) or a fixed OAuth client make the credential usable again."""

    def __init__(self, note: str):
        super().__init__(grpc.StatusCode.UNAUTHENTICATED, note, http_status=401)


def refresh_failure(provider: str, status: int | None, code: str | None = None) -> ApiError:
    """What a refresh that got no new access token answers: RefreshRefused when the token endpoint
    refused it (an RFC 6749 error `code`, or a refusing `status`), else a 502 to try again later."""
    code = code if isinstance(code, str) and OAUTH_ERROR_CODE.fullmatch(code) else None
    if code or status in REFUSING_STATUSES:
        detail = " ".join(part for part in (f"HTTP {status}" if status else "", code or "") if part)
        return RefreshRefused(f"{provider} refused the credential's refresh token ({detail}); reconnect the "
                              f"account, or update its tokens")
    return ApiError(
        grpc.StatusCode.UNAVAILABLE,
        f"{provider}'s token endpoint could not refresh the access token ({status or 'no answer'}); try again",
        http_status=502,
    )


def can_refresh(account: UpstreamAccount) -> bool:
    """A refresh token, somewhere to spend it, and an auth that sends the access token it buys
    (basic auth sends a password: nothing to refresh)."""
    return (
        "property" in account.kind.auth
        and bool(account.properties.get("refresh_token"))
        and bool(token_url(account))
    )


def token_url(account: UpstreamAccount) -> str | None:
    app, oauth = account.oauth_app, account.provider.oauth
    return account.properties.get("token_url") or (app and app.token_url) or (oauth and oauth.token_url)


def client_credentials(account: UpstreamAccount) -> tuple[str | None, str | None]:
    """The client id and secret to refresh with: the credential's own, else its OAuth app's."""
    props = account.properties
    if props.get("client_id"):
        return props["client_id"], props.get("client_secret")
    if account.oauth_app is not None:
        return account.oauth_app.client_id, account.oauth_app.client_secret
    return None, None


def expiring(account: UpstreamAccount) -> bool:
    expires_at = account.properties.get("expires_at")
    return isinstance(expires_at, (int, float)) and expires_at - EXPIRY_MARGIN_SECONDS <= time.time()


def access_token(account: UpstreamAccount) -> str | None:
    return account.properties.get(account.kind.auth.get("property", ""))


class TokenRefresher:
    def __init__(
        self, store: Store, box: SecretBox, accounts: Accounts, forwarder: Forwarder, refused_retry_seconds: float = 60.0
    ):
        self.store = store
        self.box = box
        self.accounts = accounts
        self.forwarder = forwarder
        self.refused_retry_seconds = refused_retry_seconds  # a refused refresh token is tried again after this
        # credential id -> its refresh in flight, shared by every caller meanwhile; nothing kept after
        self._refreshing: TtlCache[UpstreamAccount] = TtlCache(ttl=0)

    async def fresh(
        self, account: UpstreamAccount, *, rejected: bool = False, deadline: float | None = None
    ) -> UpstreamAccount:
        """The account with a usable access token: refreshed if it is expiring, or if the
        upstream just `rejected` it (401). Returns the account unchanged when it cannot refresh.
        `deadline` (event loop time) bounds this caller's wait, not the refresh itself."""
        if not can_refresh(account) or not (rejected or expiring(account)):
            return account
        refusal = account.refresh_refusal
        if refusal is not None and (utcnow() - refusal.at).total_seconds() < self.refused_retry_seconds:
            raise RefreshRefused(refusal.note)  # refused a moment ago: the answer is the same
        try:
            async with asyncio.timeout_at(deadline) as waiting:
                return await self._refreshing.get(account.credential_id, lambda: self._refresh(account))
        except TimeoutError:
            if not waiting.expired():
                raise
            raise ApiError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"{account.provider.name} API timed out (refreshing the access token)",
            ) from None

    async def _refresh(self, account: UpstreamAccount) -> UpstreamAccount:
        stale = access_token(account)
        try:
            if self.store.is_postgres:
                await self.store.run(self._refresh_locked, account.org_id, account.credential_id, stale)
            else:
                # Another refresh may have finished since this caller read the account.
                current = await self.accounts.reload(account.org_id, account.credential_id)
                if access_token(current) != stale and not expiring(current):
                    return current
                await self.store.run(self._save, current, await self._exchange(current))
        except RefreshRefused as refused:
            await self.store.run(refresh_refused, account.credential_id, refused.message)
            self.accounts.forget()
            raise
        self.accounts.forget()
        return await self.accounts.reload(account.org_id, account.credential_id)

    def _refresh_locked(self, org_id: str, credential_id: str, stale: str | None) -> None:
        """PostgreSQL: refresh under a lock that every process respects (call in `store.run`)."""
        self.store.db.execute_sql("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"headwater:oauth:{credential_id}",))
        current = self.accounts.load(org_id, credential_id)
        if access_token(current) != stale and not expiring(current):
            return  # another process refreshed while we waited for the lock
        self._save(current, await_(self._exchange(current)))

    async def _exchange(self, account: UpstreamAccount) -> dict:
        """Asks the token endpoint for new tokens; the property changes to store."""
        oauth = account.provider.oauth
        client = TokenClient(self.forwarder, *client_credentials(account), timeout=REFRESH_TIMEOUT_SECONDS,
                             basic_auth=bool(oauth and oauth.client_auth == "basic"))
        failure = None
        try:
            token = await client.refresh_token(token_url(account), refresh_token=account.properties["refresh_token"])
        except OAuth2Error as refused:  # RFC 6749's `error` (invalid_grant, invalid_client): no secret in it
            failure = refresh_failure(account.provider.name, client.status, refused.error)
        except TokenEndpointFailed as failed:
            failure = refresh_failure(account.provider.name, failed.status)
        else:
            if not token.get("access_token"):
                failure = refresh_failure(account.provider.name, client.status)
        if failure is not None:
            # Never log the answer: it may carry tokens.
            log.warning("token refresh failed for credential %s: %s", account.credential_id, failure.message)
            raise failure

        changes = {account.kind.auth["property"]: token["access_token"]}
        if token.get("refresh_token"):
            changes["refresh_token"] = token["refresh_token"]
        if isinstance(token.get("expires_at"), int):
            changes["expires_at"] = token["expires_at"]
        return changes | account_properties(account.provider.oauth, token)

    def _save(self, account: UpstreamAccount, changes: dict) -> None:
        row = Credential.get_by_id(account.credential_id)
        seal_properties(row, account.kind, {**open_properties(row, self.box), **changes}, self.box)
        row.updated_at = utcnow()
        row.save()
        credential_healthy(row)

