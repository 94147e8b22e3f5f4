"""The upstream pipeline's decisions, without sockets: what an answer means (the classification,
driven by the catalogue), and what `Upstream.send` does with it (repeat, refresh, pause, answer).

The upstream is a MockTransport (headwater.upstream.transport); everything else is Headwater's own
(the shipped catalogue, the in-process pacer, the backoff). The same behaviour against real
loopback emulators, through the server, is in tests/test_rate_limits.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import time

import grpc
import pytest

from headwater.upstream.accounts import UpstreamAccount
from headwater.upstream.catalogue import Collection, ProviderCatalogue, WriteRequest, WriteSpec
from headwater.upstream.gateway import Priority, Upstream, UpstreamCall
from headwater.upstream.outcomes import Kind, UpstreamFailure, classify, failure
from headwater.upstream.budget import Budget, InProcessPacer
from headwater.upstream.transport import (
    MockTransport,
    UpstreamConnectError,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamTimeout,
)
from headwater.upstream.writes import write_record

CATALOGUE = ProviderCatalogue.default()
NOW = 1_800_000_000.0  # the epoch time the classification is asked at


def answer(status: int, headers: list[tuple[str, str]] | None = None, body: bytes = b"{}") -> UpstreamResponse:
    return UpstreamResponse(status, headers or [], body, 0.001)


def outcome_of(provider: str, response: UpstreamResponse):
    kind = next(iter(CATALOGUE.provider(provider).credential_kinds.values()))
    return classify(response, kind.limits, kind.retry, now=NOW)


# --- the classification ---------------------------------------------------------------------------

GITHUB_SPENT = [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", str(int(NOW) + 30))]


@pytest.mark.parametrize("provider, response, kind, pause, repeat", [
    # GitHub's primary rate limit is a 403 with the budget at 0; its reset is an epoch
    ("github", answer(403, GITHUB_SPENT), Kind.PAUSE, 30, True),
    # a 403 that says nothing of the budget is a permission refusal: permanent
    ("github", answer(403, [("x-ratelimit-remaining", "4000")]), Kind.PERMANENT, None, False),
    ("github", answer(403), Kind.PERMANENT, None, False),
    # a secondary rate limit: a 403 with Retry-After
    ("github", answer(403, [("Retry-After", "60")]), Kind.PAUSE, 60, True),
    ("github", answer(429, [("Retry-After", "5")]), Kind.PAUSE, 5, True),
    # an answer that spends the last of the budget pauses it before the provider refuses anything
    ("github", answer(200, GITHUB_SPENT), Kind.SUCCESS, 30, False),
    ("github", answer(200, [("x-ratelimit-remaining", "1"), ("x-ratelimit-reset", str(int(NOW) + 30))]),
     Kind.SUCCESS, None, False),
    # HubSpot: remaining per window, the window in ms
    ("hubspot", answer(200, [("X-HubSpot-RateLimit-Remaining", "0"),
                             ("X-HubSpot-RateLimit-Interval-Milliseconds", "10000")]), Kind.SUCCESS, 10, False),
    ("hubspot", answer(429, [("X-HubSpot-RateLimit-Interval-Milliseconds", "10000")]), Kind.PAUSE, 10, True),
    # Salesforce: used/allowed of the day's allowance, and its limit is a 403 saying so
    ("salesforce", answer(200, [("Sforce-Limit-Info", "api-usage=15000/15000")]), Kind.SUCCESS, 300, False),
    ("salesforce", answer(200, [("Sforce-Limit-Info", "api-usage=18/15000")]), Kind.SUCCESS, None, False),
    ("salesforce", answer(403, body=b'[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]'),
     Kind.PAUSE, 300, True),
    ("salesforce", answer(403, body=b'[{"message":"no","errorCode":"INSUFFICIENT_ACCESS_OR_READONLY"}]'),
     Kind.PERMANENT, None, False),
    # Retry-After as seconds and as an HTTP date; the IETF RateLimit field (both drafts' spellings)
    ("stripe", answer(429, [("Retry-After", "2")]), Kind.PAUSE, 2, True),
    ("stripe", answer(429, [("Retry-After", email.utils.formatdate(NOW + 40, usegmt=True))]), Kind.PAUSE, 40, True),
    ("stripe", answer(200, [("RateLimit", '"default";r=0;t=7')]), Kind.SUCCESS, 7, False),
    ("stripe", answer(200, [("RateLimit", "limit=100, remaining=0, reset=9")]), Kind.SUCCESS, 9, False),
    ("stripe", answer(200, [("RateLimit", '"default";r=50;t=7')]), Kind.SUCCESS, None, False),
    # a 429 that names no wait: the provider's pause_seconds
    ("stripe", answer(429), Kind.PAUSE, 1, True),
    # a reset as an ISO-8601 time (Jira), and as seconds with a fraction (Discord)
    ("jira", answer(200, [("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", "2027-01-15T08:00:30.000Z")]),
     Kind.SUCCESS, 30, False),
    ("discord", answer(200, [("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset-After", "2.5")]), Kind.SUCCESS, 2.5, False),
    # several budgets: the lowest counts, whichever header comes first (Xero's minute and day)
    ("xero", answer(200, [("X-DayLimit-Remaining", "4000"), ("X-MinLimit-Remaining", "0")]), Kind.SUCCESS, 60, False),
    ("xero", answer(200, [("X-DayLimit-Remaining", "0"), ("X-MinLimit-Remaining", "50")]), Kind.SUCCESS, 60, False),
    ("xero", answer(200, [("X-DayLimit-Remaining", "4000"), ("X-MinLimit-Remaining", "50")]), Kind.SUCCESS, None, False),
    # Shopify's bucket, used/size in a header of its own
    ("shopify", answer(200, [("X-Shopify-Shop-Api-Call-Limit", "40/40")]), Kind.SUCCESS, 1, False),
    ("shopify", answer(200, [("X-Shopify-Shop-Api-Call-Limit", "32/40")]), Kind.SUCCESS, None, False),
    # Marketo says "over the limit" in a 200's body; another 200 of Marketo's is a success
    ("marketo", answer(200, body=b'{"success":false,"errors":[{"code":"606","message":"Max rate limit"}]}'),
     Kind.PAUSE, 20, True),
    ("marketo", answer(200, body=b'{"success":true,"result":[]}'), Kind.SUCCESS, None, False),
    # GraphQL APIs that answer a throttled query 200 with an error code
    ("shopify", answer(200, body=b'{"errors":[{"message":"Throttled","extensions":{"code":"THROTTLED"}}]}'),
     Kind.PAUSE, 1, True),
    ("linear", answer(200, body=b'{"errors":[{"message":"Rate limited","extensions":{"code":"RATELIMITED"}}]}'),
     Kind.PAUSE, 1, True),
    ("linear", answer(200, body=b'{"data":{"issues":{"nodes":[{"title":"RATELIMITED in logs"}]}}}'),
     Kind.SUCCESS, None, False),
    # Google's rate limit is a 403 with its reason in the body; another 403 is a refusal
    ("googledrive", answer(403, body=b'{"error":{"errors":[{"reason":"userRateLimitExceeded"}]}}'), Kind.PAUSE, 60, True),
    ("googledrive", answer(403, body=b'{"error":{"errors":[{"reason":"insufficientPermissions"}]}}'),
     Kind.PERMANENT, None, False),
    # transient answers, repeated only where retry.transient says so
    ("stripe", answer(503), Kind.RETRY, None, True),
    ("stripe", answer(503, [("Retry-After", "3")]), Kind.RETRY, 3, True),
    ("stripe", answer(500), Kind.RETRY, None, False),
    ("stripe", answer(504), Kind.TIMEOUT, None, True),
    ("stripe", answer(408), Kind.TIMEOUT, None, False),
    ("stripe", answer(401), Kind.REFRESH, None, False),
    ("stripe", answer(422), Kind.PERMANENT, None, False),
    ("stripe", answer(404), Kind.PERMANENT, None, False),
    ("stripe", answer(302), Kind.SUCCESS, None, False),
])
def test_an_answer_is_classified_by_the_providers_catalogue_entry(provider, response, kind, pause, repeat):
    outcome = outcome_of(provider, response)

    assert outcome.kind is kind
    assert outcome.pause == (pytest.approx(pause, abs=0.01) if pause is not None else None)
    assert outcome.repeat is repeat


def test_a_wait_past_a_day_pauses_the_credential_for_a_day_at_most():
    # a reset a year away (a misread unit, a broken header) must not stop a credential for a year
    year = 365 * 86_400
    for response in (
        answer(403, [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", str(int(NOW) + year))]),
        answer(429, [("Retry-After", str(year))]),
        answer(503, [("Retry-After", str(year))]),
    ):
        assert outcome_of("github", response).pause == 86_400


def test_a_credential_kind_may_read_answers_its_own_way():
    entry = {
        "name": "Acme", "base_url": "https://api.acme.example", "default_rate_limit": {"allowed_requests": 1, "interval": 1},
        "limits": {"remaining": [{"header": "X-Left"}]},
        "credential_kinds": {
            "acme_key": {"auth": {"type": "bearer", "property": "key"}},
            "acme_app": {"auth": {"type": "bearer", "property": "key"}, "limits": {"remaining": [{"header": "X-App-Left"}]},
                         "retry": {"idempotency_header": "X-Dedupe"}},
        },
    }
    kinds = ProviderCatalogue.from_dict({"providers": {"acme": entry}}).provider("acme").credential_kinds
    spent = answer(200, [("X-Left", "0"), ("X-App-Left", "5")])

    assert classify(spent, kinds["acme_key"].limits, kinds["acme_key"].retry).pause == 1
    assert classify(spent, kinds["acme_app"].limits, kinds["acme_app"].retry).pause is None
    assert kinds["acme_app"].retry.idempotency_header == "X-Dedupe" and not kinds["acme_key"].retry.idempotency_header


@pytest.mark.parametrize("kind, status, code, http_status, message", [
    (Kind.TIMEOUT, 0, grpc.StatusCode.DEADLINE_EXCEEDED, 504, "Stripe API timed out"),
    (Kind.UNREACHABLE, 0, grpc.StatusCode.UNAVAILABLE, 502, "Stripe API could not be reached (connection refused or reset)"),
    (Kind.PAUSE, 429, grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "Stripe API rate limit exceeded: `slow down`"),
    (Kind.RETRY, 500, grpc.StatusCode.UNAVAILABLE, 502, "Stripe API failed (HTTP 500): `slow down`"),
    (Kind.REFRESH, 401, grpc.StatusCode.FAILED_PRECONDITION, 400, "Stripe refused credential cred_1 (HTTP 401): `slow down`"),
    (Kind.PERMANENT, 403, grpc.StatusCode.FAILED_PRECONDITION, 400, "Stripe refused credential cred_1 (HTTP 403): `slow down`"),
    (Kind.PERMANENT, 404, grpc.StatusCode.NOT_FOUND, 404, "Stripe has no Customer cus_1: `slow down`"),
    (Kind.PERMANENT, 400, grpc.StatusCode.INVALID_ARGUMENT, 400, "Stripe validation error: `slow down`"),
])
def test_one_table_maps_outcomes_to_the_documented_errors(kind, status, code, http_status, message):
    error = failure(kind, "Stripe API", status=status, message="slow down", credential="cred_1",
                    subject="Customer cus_1")

    assert (error.code, error.http_status, error.message) == (code, http_status, message)


# --- what send does with an outcome ---------------------------------------------------------------

class Refresher:
    """Stands in for the token endpoint's side of TokenRefresher (tests/test_oauth_refresh.py has the
    real one): a rejected token is swapped for `fresh_token` once."""

    def __init__(self, fresh_token: str | None = None):
        self.fresh_token = fresh_token
        self.refreshes = 0

    async def fresh(self, account, *, rejected=False, deadline=None):
        if not rejected or self.fresh_token is None:
            return account
        self.refreshes += 1
        return dataclasses.replace(account, properties={**account.properties, "token": self.fresh_token})


def account_of(provider: str = "github", credential_id: str = "cred_1") -> UpstreamAccount:
    entry = CATALOGUE.provider(provider)
    kind_name = {"github": "github_token", "stripe": "stripe_api_key", "hubspot": "hubspot_private_app",
                 "marketo": "marketo_access_token"}[provider]
    kind = entry.credential_kinds[kind_name]
    secret = kind.auth["property"]
    return UpstreamAccount(credential_id, "org_1", entry, kind, Budget(1000, 1),
                           {"kind": kind_name, secret: "tok-0", "base_url": "https://api.example.com"})


def scripted(*answers):
    """A handler that plays `answers` in turn (an exception class is raised), the last one for ever;
    each request's arrival time is kept in `.at`."""
    queue = list(answers)

    def handle(request: UpstreamRequest):
        handle.at.append(time.monotonic())
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, type) and issubclass(item, Exception):
            raise item("api.example.com: as scripted", "api.example.com")
        return item

    handle.at = []
    return handle


async def send(handler, *, method="GET", headers=None, seconds=10.0, provider="github", refresher=None,
               pacer=None, account=None):
    transport = MockTransport(handler)
    upstream = Upstream(transport, pacer or InProcessPacer(), refresher or Refresher())
    call = UpstreamCall(method=method, path="repos/o/r/issues", headers=headers or [],
                        deadline=asyncio.get_running_loop().time() + seconds)
    return await upstream.send(account or account_of(provider), call), transport


async def test_a_get_is_repeated_after_transient_answers_until_one_succeeds():
    sent, transport = await send(scripted(answer(503), answer(502), answer(200)))

    assert sent.response.status == 200 and sent.attempts == 3 and sent.outcome.kind is Kind.SUCCESS
    assert len(transport.requests) == 3


async def test_a_post_is_not_repeated_unless_the_provider_deduplicates_by_its_idempotency_key():
    key = [("Idempotency-Key", "k-1")]

    github, github_transport = await send(scripted(answer(503), answer(200)), method="POST", headers=key)
    plain, plain_transport = await send(scripted(answer(503), answer(200)), method="POST", provider="stripe")
    stripe, stripe_transport = await send(scripted(answer(503), answer(200)), method="POST", headers=key,
                                          provider="stripe")

    assert (github.response.status, len(github_transport.requests)) == (503, 1)  # GitHub ignores the key
    assert (plain.response.status, len(plain_transport.requests)) == (503, 1)  # no key: not safe
    assert (stripe.response.status, len(stripe_transport.requests)) == (200, 2)  # Stripe dedupes by it


async def test_a_401_refreshes_the_token_and_sends_once_more():
    refresher = Refresher(fresh_token="tok-1")

    sent, transport = await send(scripted(answer(401), answer(401), answer(200)), refresher=refresher)

    assert sent.response.status == 401 and sent.outcome.kind is Kind.REFRESH  # refreshed once, not twice
    assert refresher.refreshes == 1
    assert [dict(r.headers)["Authorization"] for r in transport.requests] == ["Bearer tok-0", "Bearer tok-1"]


async def test_a_rate_limit_that_resets_in_time_pauses_the_credential_and_then_sends_again():
    pause = [("Retry-After", "0.5")]

    handler = scripted(answer(429, pause), answer(200))
    sent, transport = await send(handler)

    assert sent.response.status == 200 and sent.attempts == 2
    assert handler.at[1] - handler.at[0] >= 0.45  # held back by the paused budget


async def test_a_reset_far_past_the_deadline_answers_at_once_and_later_calls_get_429_with_retry_after():
    pacer = InProcessPacer()
    account = account_of("github")
    hour = [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", str(int(time.time()) + 3600))]
    started = time.monotonic()

    sent, _ = await send(scripted(answer(403, hour)), pacer=pacer, account=account)
    with pytest.raises(UpstreamFailure) as refused:
        await send(scripted(answer(200)), pacer=pacer, account=account)

    assert sent.response.status == 403 and sent.attempts == 1  # the provider's answer, not a wait
    assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and refused.value.kind is Kind.PAUSE
    assert 3500 <= int(refused.value.headers["Retry-After"]) <= 3601
    assert time.monotonic() - started < 5  # nobody was held for the hour


async def test_an_answer_that_spends_the_budget_holds_the_next_call_until_the_reset():
    pacer = InProcessPacer()
    account = account_of("stripe")
    handler = scripted(answer(200, [("RateLimit", '"default";r=0;t=1')]), answer(200))

    first, _ = await send(handler, pacer=pacer, account=account, provider="stripe")
    second, _ = await send(handler, pacer=pacer, account=account, provider="stripe")

    assert first.response.status == second.response.status == 200
    assert handler.at[1] - handler.at[0] >= 0.95  # waited for the reset the provider announced


async def test_no_answer_in_time_is_repeated_for_a_get_then_answered_504():
    with pytest.raises(UpstreamFailure) as timed_out:
        await send(scripted(UpstreamTimeout), seconds=1.0)
    with pytest.raises(UpstreamFailure) as unreachable:
        await send(scripted(UpstreamConnectError), seconds=1.0)
    recovered, transport = await send(scripted(UpstreamConnectError, answer(200)))

    assert (timed_out.value.code, timed_out.value.message) == (grpc.StatusCode.DEADLINE_EXCEEDED, "GitHub API timed out")
    assert unreachable.value.http_status == 502 and unreachable.value.kind is Kind.UNREACHABLE
    assert recovered.response.status == 200 and len(transport.requests) == 2


async def test_backoff_never_runs_past_the_deadline():
    started = asyncio.get_running_loop().time()

    sent, transport = await send(scripted(answer(503)), seconds=0.25)

    assert sent.response.status == 503  # the last answer, given back before the deadline
    assert asyncio.get_running_loop().time() - started < 0.25
    assert 1 <= len(transport.requests) <= 3


async def test_background_reads_go_through_the_same_pipeline():
    transport = MockTransport(scripted(answer(503), answer(200)))
    upstream = Upstream(transport, InProcessPacer(), Refresher())
    call = UpstreamCall(method="GET", path="repos/o/r/issues", priority=Priority.BACKGROUND,
                        deadline=asyncio.get_running_loop().time() + 10)

    sent = await upstream.send(account_of(), call)

    assert sent.response.status == 200 and sent.attempts == 2


async def test_a_write_meeting_githubs_rate_limit_is_a_429_not_a_refused_credential():
    issue = Collection("github:issue", "github", "issue", "Issue",
                       write=WriteSpec(create=WriteRequest("POST", "repos/o/r/issues"), error_message="message"))
    limited = answer(403, [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", str(int(time.time()) + 120))],
                     b'{"message": "API rate limit exceeded for user ID 1."}')
    upstream = Upstream(MockTransport(lambda request: limited), InProcessPacer(), Refresher())

    with pytest.raises(UpstreamFailure) as refused:
        await write_record(upstream, account_of(), issue, "create", "", {"title": "Hi"}, "k-1",
                           asyncio.get_running_loop().time() + 10)

    assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.value.message == "GitHub API rate limit exceeded: `API rate limit exceeded for user ID 1.`"
    assert 100 <= int(refused.value.headers["Retry-After"]) <= 121


async def test_a_write_marketo_answers_200_over_its_limit_is_a_429_not_a_success():
    lead = Collection("marketo:lead", "marketo", "lead", "Lead",
                      write=WriteSpec(create=WriteRequest("POST", "v1/leads.json"), error_message="errors.0.message"))
    limited = answer(200, body=b'{"requestId":"e42b","success":false,"errors":[{"code":"606",'
                               b'"message":"Max rate limit \'100\' exceeded with in \'20\' secs"}]}')
    upstream = Upstream(MockTransport(lambda request: limited), InProcessPacer(), Refresher())

    with pytest.raises(UpstreamFailure) as refused:
        await write_record(upstream, account_of("marketo"), lead, "create", "", {"email": "a@b.c"}, "k-1",
                           asyncio.get_running_loop().time() + 10)

    assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.value.message == "Marketo API rate limit exceeded: `Max rate limit '100' exceeded with in '20' secs`"
    assert refused.value.headers["Retry-After"] == "20"
