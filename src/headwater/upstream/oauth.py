"""OAuth2 token refresh: before the access token expires, and once when the upstream answers 401.

A credential can be refreshed when it has a `refresh_token` property; the token endpoint is its
`token_url` property or its provider's `oauth_token_url`, and `client_id` / `client_secret` are
sent when the credential has them. The new tokens are stored encrypted like every secret, with
`expires_at` (seconds since the epoch) from the answer's `expires_in`.

One refresh at a time per credential: concurrent callers wait for the refresh in flight and use
its result instead of starting their own (providers that rotate refresh tokens invalidate the old
one on first use, so a second refresh would fail). Within a process the refresh is one shared task
per credential; across processes on PostgreSQL, a transaction-scoped advisory lock on the
credential serializes them (the refresh holds one database connection for its duration, at most
REFRESH_TIMEOUT_SECONDS). SQLite is the one-process deployment, so the shared task is all it needs.

Each caller waits for the refresh at most until its own deadline (then: 504, "<Provider> API timed
out"); giving up does not cancel the refresh, which the other callers, and later ones, still use.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from urllib.parse import urlencode

import grpc
from playhouse.pwasyncio import await_

from headwater.cache import TtlCache
from headwater.crypto import SecretBox
from headwater.errors import ApiError
from headwater.store import Credential, Store, utcnow
from headwater.upstream.accounts import Accounts, UpstreamAccount, open_properties, seal_properties
from headwater.upstream.forwarder import Forwarder, UpstreamError, UpstreamRequest

log = logging.getLogger("headwater.oauth")

# Refresh this long before the access token expires.
EXPIRY_MARGIN_SECONDS = 60
REFRESH_TIMEOUT_SECONDS = 15


def can_refresh(account: UpstreamAccount) -> bool:
    """A refresh token, somewhere to spend it, and an auth that sends the access token it buys
    (basic auth sends a password: nothing to refresh)."""
    return (
        "property" in account.kind.auth
        and bool(account.properties.get("refresh_token"))
        and bool(token_url(account))
    )


def token_url(account: UpstreamAccount) -> str | None:
    return account.properties.get("token_url") or account.provider.oauth_token_url


def expiring(account: UpstreamAccount) -> bool:
    expires_at = account.properties.get("expires_at")
    return isinstance(expires_at, (int, float)) and expires_at - EXPIRY_MARGIN_SECONDS <= time.time()


def access_token(account: UpstreamAccount) -> str | None:
    return account.properties.get(account.kind.auth.get("property", ""))


class TokenRefresher:
    def __init__(self, store: Store, box: SecretBox, accounts: Accounts, forwarder: Forwarder):
        self.store = store
        self.box = box
        self.accounts = accounts
        self.forwarder = forwarder
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
        if self.store.is_postgres:
            await self.store.run(self._refresh_locked, account.org_id, account.credential_id, stale)
        else:
            # Another refresh may have finished since this caller read the account.
            current = await self.accounts.reload(account.org_id, account.credential_id)
            if access_token(current) != stale and not expiring(current):
                return current
            await self.store.run(self._save, current, await self._exchange(current))
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
        props = account.properties
        form = {"grant_type": "refresh_token", "refresh_token": props["refresh_token"]}
        for name in ("client_id", "client_secret"):
            if props.get(name):
                form[name] = props[name]
        name = account.provider.name
        try:
            response = await self.forwarder.send(UpstreamRequest(
                method="POST",
                url=token_url(account),
                headers=[("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json")],
                body=urlencode(form).encode(),
                timeout=REFRESH_TIMEOUT_SECONDS,
            ))
            answer = json.loads(response.body) if response.status == 200 else None
        except (UpstreamError, ValueError):
            answer = None
            response = None
        if not isinstance(answer, dict) or not answer.get("access_token"):
            status = response.status if response is not None else "no answer"
            # Never log the answer: it may carry tokens.
            log.warning("token refresh failed for credential %s: %s", account.credential_id, status)
            raise ApiError(
                grpc.StatusCode.UNAUTHENTICATED,
                f"{name} rejected the credential's refresh token ({status}); reconnect the account",
                http_status=401,
            )

        changes = {account.kind.auth["property"]: answer["access_token"]}
        if answer.get("refresh_token"):
            changes["refresh_token"] = answer["refresh_token"]
        if isinstance(answer.get("expires_in"), (int, float)):
            changes["expires_at"] = int(time.time() + answer["expires_in"])
        if answer.get("instance_url") and account.kind.base_url_property == "instance_url":
            changes["instance_url"] = answer["instance_url"]
        return changes

    def _save(self, account: UpstreamAccount, changes: dict) -> None:
        row = Credential.get_by_id(account.credential_id)
        seal_properties(row, account.kind, {**open_properties(row, self.box), **changes}, self.box)
        row.updated_at = utcnow()
        row.save()
