"""The one way Headwater calls an upstream API: paced, authorized, retried when safe.

Proxy calls and mutations both go through `Upstream.send`, so every request made with one
credential shares that credential's budget.

    sent = await upstream.send(account, "GET", "v1/customers", "limit=3", headers, b"", deadline)
    sent.response.status, sent.url

Upstream failures become the documented errors: timeout 504 "Error: Stripe API timed out",
connection refused or reset 502, budget not available before the deadline 429 with Retry-After,
shared pacer unreachable 503 (never an unpaced request).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import math
import random
import time
from dataclasses import dataclass

import grpc

from headwater.errors import ApiError
from headwater.upstream.accounts import UpstreamAccount
from headwater.upstream.forwarder import (
    ForbiddenAddress,
    Forwarder,
    ResponseTooLarge,
    UpstreamConnectError,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamTimeout,
)
from headwater.upstream.oauth import TokenRefresher
from headwater.upstream.budget import Budget, BudgetExhausted, Pacer, PacerUnavailable, Permit
from headwater.upstream.requests import upstream_url

# Background sync reads may use at most this share of a credential's budget: they also take a
# slot under the key "<credential>:sync" with a budget of 80% of the credential's, so interactive
# calls (proxy, mutations) always find at least 20% of it.
BACKGROUND_SHARE = 0.8

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
MAX_ATTEMPTS = 4


@dataclass
class Sent:
    response: UpstreamResponse
    account: UpstreamAccount  # as used for the last attempt (a refresh may have changed it)
    url: str  # the last attempt's URL: holds secrets when the auth is a query parameter
    waited: float  # seconds spent waiting for the budget, all attempts
    attempts: int
    permit: Permit | None = None  # the last attempt's (each window's remaining and reset: the RateLimit headers)


def retry_after_seconds(headers: list[tuple[str, str]]) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date."""
    for name, value in headers:
        if name.lower() != "retry-after":
            continue
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError):
            return None
    return None


def background_budget(budget: Budget) -> Budget:
    """The part of a credential's budget that background sync reads may use (at least 1 request)."""
    cap = budget.max_concurrent
    return Budget(
        max(1, int(budget.allowed_requests * BACKGROUND_SHARE)),
        budget.interval,
        max(1, int(cap * BACKGROUND_SHARE)) if cap else 0,
    )


def _background_key(account: UpstreamAccount) -> tuple[str, Budget]:
    """The pacer key and budget of the credential's background share."""
    return f"{account.credential_id}:sync", background_budget(account.budget)


def answer_margin(seconds: float) -> float:
    """Of a caller's `seconds`, how much to keep for answering, so that an upstream timeout reaches
    the caller as our 504 before its own deadline fires: a gRPC deadline arrives rounded up (to
    three significant figures: 5.999 s is sent as 6 s), and the answer takes a moment to travel.

        answer_margin(6.0)    # 0.08: the upstream gets 5.92 s
    """
    return 0.02 + seconds / 100


def api_name(account: UpstreamAccount) -> str:
    """How errors name the upstream: "Stripe API"; a provider named "Custom API" is named as it is."""
    name = account.provider.name
    return name if name.endswith(" API") else f"{name} API"


def is_idempotent(method: str, headers: list[tuple[str, str]]) -> bool:
    return method.upper() in IDEMPOTENT_METHODS or any(n.lower() == "idempotency-key" for n, _ in headers)


class Upstream:
    def __init__(self, forwarder: Forwarder, pacer: Pacer, refresher: TokenRefresher):
        self.forwarder = forwarder
        self.pacer = pacer
        self.refresher = refresher

    async def send(
        self,
        account: UpstreamAccount,
        method: str,
        path: str,
        query: str,
        headers: list[tuple[str, str]],
        body: bytes,
        deadline: float,
        background: bool = False,
    ) -> Sent:
        """Sends `method path?query` under the credential's budget with its auth added; retries
        idempotent requests within the deadline, and any request once after a refreshed token.

        `headers` are the caller's, already filtered (requests.outbound_headers); `path` is
        relative to the account's base URL or fully qualified (UnsafeRequest if not allowed).
        `deadline` is a time on the event loop's clock (`loop.time()`).
        `background` (sync reads): also within the background share (BACKGROUND_SHARE).
        """
        loop = asyncio.get_running_loop()
        api = api_name(account)
        retry = is_idempotent(method, headers)
        waited = 0.0
        account = await self.refresher.fresh(account, deadline=deadline)
        refreshed = False
        for attempt in range(1, MAX_ATTEMPTS + 1):
            authorized, authorized_query = account.authorize(headers, query)
            url = upstream_url(account.base_url, path, authorized_query, account.permitted_hosts)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ApiError(grpc.StatusCode.DEADLINE_EXCEEDED, f"{api} timed out")
            try:
                async with self._background_slot(account, background, remaining) as share, self.pacer.slot(
                    account.credential_id, account.budget, timeout=deadline - loop.time()
                ) as permit:
                    if background and permit.waited:
                        # It starts now, not at its share's slot: the share's window counts it now.
                        await self.pacer.started(*_background_key(account), share)
                    waited += share.waited + permit.waited
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        raise UpstreamTimeout(api)
                    response = await self.forwarder.send(
                        UpstreamRequest(method=method, url=url, headers=authorized, body=body, timeout=remaining)
                    )
            except BudgetExhausted as exhausted:
                seconds = max(1, math.ceil(exhausted.retry_after))
                raise ApiError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"the rate limit of credential {account.credential_id} leaves no room before the "
                    f"deadline; retry in {seconds} s",
                    headers={"Retry-After": str(seconds)},
                ) from None
            except PacerUnavailable:
                raise ApiError(
                    grpc.StatusCode.UNAVAILABLE, "the shared rate limiter is unavailable; nothing was sent"
                ) from None
            except UpstreamTimeout:
                if retry and attempt < MAX_ATTEMPTS and await self._backoff(attempt, deadline, None):
                    continue
                raise ApiError(grpc.StatusCode.DEADLINE_EXCEEDED, f"{api} timed out") from None
            except UpstreamConnectError:
                if retry and attempt < MAX_ATTEMPTS and await self._backoff(attempt, deadline, None):
                    continue
                raise ApiError(
                    grpc.StatusCode.UNAVAILABLE, f"{api} could not be reached (connection refused or reset)",
                    http_status=502,
                ) from None
            except ForbiddenAddress:
                raise ApiError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"{api} host resolves to a private or loopback address, which Headwater does not call",
                ) from None
            except ResponseTooLarge:
                raise ApiError(
                    grpc.StatusCode.UNAVAILABLE, f"{api} answered with a body over the size limit",
                    http_status=502,
                ) from None

            if response.status == 401 and not refreshed and attempt < MAX_ATTEMPTS:
                fresh = await self.refresher.fresh(account, rejected=True, deadline=deadline)
                if fresh is not account:
                    account, refreshed = fresh, True
                    continue  # the request was refused unread: sending it again is safe
            if response.status in RETRYABLE_STATUSES:
                pause = retry_after_seconds(response.headers) if response.status in (429, 503) else None
                if pause is not None:
                    await self.pacer.pause(account.credential_id, pause)
                if retry and attempt < MAX_ATTEMPTS and await self._backoff(attempt, deadline, pause):
                    continue
            return Sent(response, account, url, waited, attempt, permit)
        raise AssertionError("unreachable")

    def _background_slot(self, account: UpstreamAccount, background: bool, timeout: float):
        if not background:
            return contextlib.nullcontext(Permit())
        return self.pacer.slot(*_background_key(account), timeout=timeout)

    async def _backoff(self, attempt: int, deadline: float, paused_for: float | None) -> bool:
        """Sleeps before the next attempt if it can still finish in time; False if not.

        After a Retry-After the pacer itself holds the next attempt back (`paused_for`)."""
        loop = asyncio.get_running_loop()
        if paused_for is not None:
            return loop.time() + paused_for < deadline
        delay = min(2.0, 0.1 * 2 ** (attempt - 1)) * random.uniform(1.0, 1.2)
        if loop.time() + delay >= deadline:
            return False
        await asyncio.sleep(delay)
        return True
