"""The one way Headwater calls an upstream API: paced, authorized, classified once, retried when safe.

Proxy calls, mutation writes and sync listings each build an `UpstreamCall` and hand it to
`Upstream.send`, so every request made with one credential shares that credential's budget, and
every answer is read by the one classification (outcomes.classify, driven by the provider's
`limits:` and `retry:` in catalogue.yaml):

    call = UpstreamCall(method="GET", path="v1/customers", query="limit=3", headers=headers,
                        deadline=loop.time() + 30)
    sent = await upstream.send(account, call)
    sent.response.status, sent.outcome.kind, sent.url

What `send` does with an outcome:
  * a rate-limited answer, or any answer saying the budget is spent: the credential's budget is
    paused for the wait the answer gives (`pacer.pause`, shared through Redis), so no request of
    it leaves before then; the request is sent again after the pause if it is safe to repeat and
    the pause ends before the deadline, else the answer is the caller's;
  * a transient answer (retry.transient), a timeout, an unreachable upstream: sent again after
    `headwater.backoff` if safe to repeat and there is time; safe to repeat means GET, HEAD, PUT,
    DELETE or OPTIONS, or a write carrying the idempotency header of a provider that deduplicates
    by it (retry.idempotency_header: Stripe's Idempotency-Key);
  * a 401: the token is refreshed and the request sent once more (it was refused unread).

Every attempt sent, its latency, its budget wait, and the pauses and refusals of the budget are
counted in the server's metrics (headwater.metrics), here and nowhere else.

Failures raise the documented errors (outcomes.ERRORS): timeout 504 "Error: Stripe API timed out",
connection refused or reset 502, budget not available before the deadline 429 with Retry-After
(at once, however far the budget's reset is: a caller is never held past its deadline), shared
pacer unreachable 503 (never an unpaced request).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import math
from dataclasses import dataclass, field

import grpc

from headwater import tracing
from headwater.backoff import backoff
from headwater.errors import ApiError
from headwater.metrics import Metrics
from headwater.recent import RecentCalls
from headwater.upstream.accounts import UpstreamAccount
from headwater.upstream.budget import Budget, BudgetExhausted, Pacer, PacerUnavailable, Permit
from headwater.upstream.catalogue import RetryPolicy
from headwater.upstream.oauth import TokenRefresher, can_refresh
from headwater.upstream.outcomes import (
    NO_ANSWER_IN_TIME,
    UNREACHABLE,
    Kind,
    Outcome,
    UpstreamFailure,
    classify,
    failure,
)
from headwater.upstream.requests import upstream_url
from headwater.upstream.transport import (
    ForbiddenAddress,
    ResponseTooLarge,
    Transport,
    UpstreamConnectError,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamTimeout,
)

__all__ = ["BACKGROUND_SHARE", "Priority", "Sent", "Upstream", "UpstreamCall"]

# Background sync reads may use at most this share of a credential's budget: they also take a
# slot under the key "<credential>:sync" with a budget of 80% of the credential's, so interactive
# calls (proxy, mutations) always find at least 20% of it.
BACKGROUND_SHARE = 0.8

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
MAX_ATTEMPTS = 4
# Backoff between attempts of one call (headwater.backoff): 0.1 s doubling, at most 2 s.
BACKOFF_BASE, BACKOFF_CAP = 0.1, 2.0


class Priority(enum.Enum):
    INTERACTIVE = "interactive"  # proxy calls, mutations: the whole budget
    BACKGROUND = "background"  # sync reads: within BACKGROUND_SHARE of it


@dataclass(slots=True, kw_only=True)
class UpstreamCall:
    """One upstream request, as its caller builds it."""

    method: str
    path: str  # relative to the account's base URL, or fully qualified (UnsafeRequest if not allowed)
    query: str = ""  # without the "?"
    headers: list[tuple[str, str]] = field(default_factory=list)  # the caller's, already filtered
    body: bytes = b""
    deadline: float  # on the event loop's clock (`loop.time()`)
    priority: Priority = Priority.INTERACTIVE


@dataclass
class Sent:
    response: UpstreamResponse
    account: UpstreamAccount  # as used for the last attempt (a refresh may have changed it)
    url: str  # the last attempt's URL: holds secrets when the auth is a query parameter
    waited: float  # seconds spent waiting for the budget, all attempts
    attempts: int
    outcome: Outcome  # what the last answer means (outcomes.classify)
    permit: Permit | None = None  # the last attempt's (each window's remaining and reset: the RateLimit headers)


def pause_reason(api: str, outcome: Outcome) -> str:
    """Why the credential's budget is paused, as the budget endpoint shows it."""
    if outcome.kind is Kind.PAUSE:
        return f"{api} answered HTTP {outcome.status}: rate limited"
    if outcome.remaining is not None:
        return f"{api} said {outcome.remaining} requests are left until its reset"
    return f"{api} answered HTTP {outcome.status} with Retry-After"


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


def is_idempotent(method: str, headers: list[tuple[str, str]], retry: RetryPolicy) -> bool:
    """Safe to send twice: an idempotent method, or a write carrying the header by which this
    provider deduplicates writes (retry.idempotency_header); any other Idempotency-Key means nothing."""
    if method.upper() in IDEMPOTENT_METHODS:
        return True
    header = retry.idempotency_header.lower()
    return bool(header) and any(n.lower() == header for n, _ in headers)


class Upstream:
    def __init__(self, forwarder: Transport, pacer: Pacer, refresher: TokenRefresher,
                 metrics: Metrics | None = None, recent: RecentCalls | None = None, *, propagate_trace: bool = False):
        self.forwarder = forwarder  # the Transport: the aiohttp Forwarder, or a MockTransport in tests
        self.pacer = pacer
        self.refresher = refresher
        self.metrics = metrics or Metrics()  # each attempt's outcome and latency, each budget wait
        self.recent = recent or RecentCalls()  # the console's recent calls and hourly charts
        # With traces on, each attempt carries its traceparent upstream (HEADWATER_TRACE_PROPAGATE_UPSTREAM).
        self.propagate_trace = propagate_trace

    async def send(self, account: UpstreamAccount, call: UpstreamCall) -> Sent:
        """Sends `call` under the credential's budget with its auth added, and classifies the
        answer; what it does with the outcome is in the module's docstring. Raises UpstreamFailure
        (an ApiError) when there is no answer to give. Either way the call is told to `recent`.

        One coroutine frame for the whole call (no inner helper): it is resumed on every socket event."""
        # What the console's recent calls are told, whether the call answers or raises.
        url, waited, upstream_seconds = "", 0.0, 0.0  # upstream_seconds: the last attempt's time upstream
        try:
            loop = asyncio.get_running_loop()
            api = api_name(account)
            deadline = call.deadline
            background = call.priority is Priority.BACKGROUND
            limits, policy = account.kind.limits, account.kind.retry
            safe = is_idempotent(call.method, call.headers, policy)
            if can_refresh(account):  # (most accounts cannot: no coroutine for them)
                account = await self.refresher.fresh(account, deadline=deadline)
            refreshed = False
            metrics, provider, credential_id = self.metrics, account.provider.key, account.credential_id
            for attempt in range(1, MAX_ATTEMPTS + 1):
                authorized, authorized_query = account.authorize(call.headers, call.query)
                url = upstream_url(account.base_url, call.path, authorized_query, account.permitted_hosts)
                if deadline - loop.time() <= 0:
                    raise failure(Kind.TIMEOUT, api)
                response = None
                sent_at = None  # when the request left, once it did
                try:
                    async with self._background_slot(account, background, deadline - loop.time()) as share, \
                            self._credential_slot(account, deadline - loop.time()) as permit:
                        if background and permit.waited:
                            # It starts now, not at its share's slot: the share's window counts it now.
                            await self.pacer.started(*_background_key(account), share)
                        waited += share.waited + permit.waited
                        metrics.budget_waited(provider, credential_id, account.budget, call.priority.value,
                                              share.waited + permit.waited)
                        remaining = deadline - loop.time()
                        if remaining <= 0:
                            raise UpstreamTimeout(api)
                        sent_at = loop.time()
                        with tracing.upstream_request(call.method, url, account.provider.key, attempt) as span:
                            try:
                                response = await self.forwarder.send(UpstreamRequest(
                                    method=call.method, url=url, body=call.body, timeout=remaining,
                                    headers=tracing.propagated(authorized, self.propagate_trace),
                                ))
                            finally:
                                upstream_seconds = loop.time() - sent_at
                            outcome = classify(response, limits, policy)
                            tracing.upstream_answered(span, response.status, outcome.kind.value)
                except BudgetExhausted as exhausted:
                    metrics.budget_refused(provider, credential_id)
                    seconds = max(1, math.ceil(exhausted.retry_after))
                    raise UpstreamFailure(
                        Kind.PAUSE, grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"the rate limit of credential {account.credential_id} leaves no room before the "
                        f"deadline; retry in {seconds} s",
                        headers={"Retry-After": str(seconds)},
                    ) from None
                except PacerUnavailable:
                    raise UpstreamFailure(
                        Kind.UNREACHABLE, grpc.StatusCode.UNAVAILABLE,
                        "the shared rate limiter is unavailable; nothing was sent",
                    ) from None
                except UpstreamTimeout:
                    outcome = NO_ANSWER_IN_TIME
                except UpstreamConnectError:
                    outcome = UNREACHABLE
                except ForbiddenAddress:
                    raise UpstreamFailure(
                        Kind.PERMANENT, grpc.StatusCode.PERMISSION_DENIED,
                        f"{api} host resolves to a private or loopback address, which Headwater does not call",
                    ) from None
                except ResponseTooLarge:
                    metrics.upstream_answered(provider, credential_id, Kind.PERMANENT.value, 0, upstream_seconds)
                    raise UpstreamFailure(
                        Kind.PERMANENT, grpc.StatusCode.UNAVAILABLE, f"{api} answered with a body over the size limit",
                        http_status=502,
                    ) from None
                else:
                    if outcome.pause is not None:
                        metrics.budget_paused(provider, credential_id)
                        await self.pacer.pause(account.credential_id, outcome.pause, reason=pause_reason(api, outcome))
                if sent_at is not None:  # the attempt's own time upstream, not the pause recorded after it
                    metrics.upstream_answered(provider, credential_id, outcome.kind.value,
                                              0 if response is None else response.status, upstream_seconds)

                # --- what to do next: refresh, repeat, or answer
                if outcome.kind is Kind.REFRESH and not refreshed and attempt < MAX_ATTEMPTS:
                    fresh = await self.refresher.fresh(account, rejected=True, deadline=deadline)
                    if fresh is not account:
                        account, refreshed = fresh, True
                        continue  # the request was refused unread: sending it again is safe
                if (outcome.repeat and safe and attempt < MAX_ATTEMPTS
                        and await self._before_next(attempt, deadline, outcome)):
                    continue
                if response is None:
                    raise failure(outcome.kind, api)
                self.recent.record(org_id=account.org_id, credential_id=account.credential_id, method=call.method,
                                   url=url, status=response.status, waited=waited, upstream=upstream_seconds)
                return Sent(response, account, url, waited, attempt, outcome, permit)
            raise AssertionError("unreachable")
        except ApiError as error:
            if url:  # it had its URL, so it was to be sent: a call the console lists
                self.recent.record(org_id=account.org_id, credential_id=account.credential_id, method=call.method,
                                   url=url, status=error.http_status, waited=waited, upstream=upstream_seconds)
            raise

    def _credential_slot(self, account: UpstreamAccount, timeout: float):
        slot = self.pacer.slot(account.credential_id, account.budget, timeout=timeout)
        return tracing.budget_wait(slot, account.credential_id, "credential")

    def _background_slot(self, account: UpstreamAccount, background: bool, timeout: float):
        if not background:
            return contextlib.nullcontext(Permit())
        return tracing.budget_wait(self.pacer.slot(*_background_key(account), timeout=timeout),
                                   account.credential_id, "background")

    async def _before_next(self, attempt: int, deadline: float, outcome: Outcome) -> bool:
        """Waits before the next attempt if it can still finish in time; False if not (the caller
        gets this answer now: a wait is never allowed to run past the deadline).

        After a pause the pacer itself holds the next attempt back until the pause ends."""
        loop = asyncio.get_running_loop()
        if outcome.pause is not None:
            return loop.time() + outcome.pause < deadline
        delay = backoff(attempt, base=BACKOFF_BASE, cap=BACKOFF_CAP, remaining=deadline - loop.time())
        if delay is None:
            return False
        await asyncio.sleep(delay)
        return True
