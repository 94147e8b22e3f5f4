"""Every provider's own rate-limit answers and error answers, through a real Headwater server.

One loopback emulator plays every provider: a credential's calls go to /{provider}/{scenario}/...,
and each scenario answers with that provider's own header shape, written here from its
documentation (the comment on its catalogue entry names the page), not read from the catalogue,
so that a wrong header name or unit in an entry fails the test that names the provider:

- LOW: an answer that says the budget is spent, and when it is back: the credential's budget is
  paused until then (GET /v1/credentials/{id}/budget shows the pause) before the provider has to
  refuse anything;
- LIMITED: the provider's "rate limited" answer, and how long its documentation says to wait: the
  credential's budget is paused for that long, the answer is passed on (the wait is past the
  caller's deadline), and later calls get 429 with Retry-After at once, sending nothing;
- IDEMPOTENT: the providers that deduplicate writes by a header: a POST carrying it is sent again
  after a 503, to them only (to another, sending it twice could write twice);
- ERRORS: an error answer and the provider's message in it: the error a mutation's caller gets
  carries it (through the real Mutation API for the providers whose collections are written, and
  through the same `answer_error` for every provider).
"""

from __future__ import annotations

import datetime
import email.utils
import json
import re
import time
from collections import defaultdict

import pytest
from emulators import read_request, serve_on_loopback
from test_providers_connect import properties_for

from conftest import Running, _client_for, _close_client, finish, settings_for
from headwater.server import Server
from headwater.upstream.catalogue import Limits, ProviderCatalogue
from headwater.upstream.outcomes import answer_error, classify
from headwater.upstream.transport import UpstreamResponse

CATALOGUE = ProviderCatalogue.default()
PROVIDERS = list(CATALOGUE.providers)
# The callers' timeout (x-headwater-timeout): shorter than every wait below, so that no case waits
# (a wait within the deadline is waited out and the call repeated: tests/test_rate_limits.py).
DEADLINE = 0.8

# --- what each provider answers ---------------------------------------------------------------------
# Header values may hold "{epoch:N}", "{epoch_ms:N}", "{iso:N}" or "{date:N}": N seconds from when
# the answer is sent, as an epoch, epoch milliseconds, an ISO-8601 time or an HTTP date.

# provider: (headers of a 200 that spends the budget, seconds until it is back)
LOW = {
    "salesforce": ({"Sforce-Limit-Info": "api-usage=15000/15000"}, 300),  # no reset named: looked at in 5 min
    "hubspot": ({"X-HubSpot-RateLimit-Max": "100", "X-HubSpot-RateLimit-Remaining": "0",
                 "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}, 10),
    "github": ({"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "{epoch:120}"}, 120),
    "gitlab": ({"RateLimit-Limit": "2000", "RateLimit-Remaining": "0", "RateLimit-Reset": "{epoch:45}"}, 45),
    "jira": ({"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "{iso:30}"}, 30),
    "confluence": ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "{iso:25}"}, 25),
    "linear": ({"X-RateLimit-Requests-Limit": "5000", "X-RateLimit-Requests-Remaining": "0",
                "X-RateLimit-Requests-Reset": "{epoch_ms:60}", "X-RateLimit-Complexity-Remaining": "240000"}, 60),
    # the account's minute budget has room; the ticket list's own is spent
    "zendesk": ({"X-Rate-Limit": "700", "X-Rate-Limit-Remaining": "500", "ratelimit-limit": "100",
                 "ratelimit-remaining": "0", "ratelimit-reset": "25"}, 25),
    "intercom": ({"X-RateLimit-Limit": "1000", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "{epoch:10}"}, 10),
    "shopify": ({"X-Shopify-Shop-Api-Call-Limit": "40/40"}, 1),  # the bucket leaks 2 a second
    # the minute budget is spent, not the day's
    "xero": ({"X-DayLimit-Remaining": "4200", "X-MinLimit-Remaining": "0", "X-AppMinLimit-Remaining": "9000"}, 60),
    "pipedrive": ({"x-ratelimit-limit": "20", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "2"}, 2),
    "close": ({"RateLimit": "limit=40, remaining=0, reset=4.5"}, 4.5),
    "sendgrid": ({"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "{epoch:60}"}, 60),
    "clickup": ({"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "{epoch:50}"}, 50),
    "discord": ({"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "{epoch:3}",
                 "X-RateLimit-Reset-After": "2.5", "X-RateLimit-Bucket": "abcd1234"}, 2.5),
    "calendly": ({"X-RateLimit-Limit": "500", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "40"}, 40),
    "greenhouse": ({"X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "0"}, 10),  # per 10 seconds
    "okta": ({"X-Rate-Limit-Limit": "600", "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": "{epoch:55}"}, 55),
    "bigcommerce": ({"X-Rate-Limit-Requests-Quota": "150", "X-Rate-Limit-Requests-Left": "0",
                     "X-Rate-Limit-Time-Window-Ms": "30000", "X-Rate-Limit-Time-Reset-Ms": "15000"}, 15),
    "sentry": ({"X-Sentry-Rate-Limit-Limit": "40", "X-Sentry-Rate-Limit-Remaining": "0",
                "X-Sentry-Rate-Limit-Reset": "{epoch:20}"}, 20),
    "auth0": ({"x-ratelimit-limit": "50", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "{epoch:30}"}, 30),
    "gusto": ({"X-RateLimit-Limit": "200", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "{iso:45}"}, 45),
    "custom": ({"RateLimit": '"default";r=0;t=33'}, 33),  # the IETF field
}

GOOGLE_403 = {"error": {"code": 403, "message": "User rate limit exceeded.", "errors": [
    {"domain": "usageLimits", "reason": "userRateLimitExceeded", "message": "User rate limit exceeded."}]}}

# provider: (status, headers, body, seconds its documentation says to wait)
LIMITED = {
    "stripe": (429, {}, {"error": {"type": "rate_limit_error", "message": "Too many requests"}}, 1),
    "salesforce": (403, {}, [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}], 300),
    "hubspot": (429, {"X-HubSpot-RateLimit-Remaining": "0", "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"},
                {"status": "error", "message": "You have reached your secondly limit.", "errorType": "RATE_LIMIT"}, 10),
    "github": (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "{epoch:120}"},
               {"message": "API rate limit exceeded for user ID 1."}, 120),
    "slack": (429, {"Retry-After": "30"}, {"ok": False, "error": "ratelimited"}, 30),
    "googledrive": (403, {}, GOOGLE_403, 60),
    "googlecalendar": (403, {}, {"error": {"code": 403, "message": "Rate Limit Exceeded", "errors": [
        {"domain": "usageLimits", "reason": "rateLimitExceeded", "message": "Rate Limit Exceeded"}]}}, 60),
    "gmail": (429, {}, {"error": {"code": 429, "message": "Too many concurrent requests for user"}}, 60),
    "gitlab": (429, {"Retry-After": "45", "RateLimit-Remaining": "0", "RateLimit-Reset": "{epoch:45}"}, "Retry later", 45),
    "jira": (429, {"Retry-After": "30", "X-RateLimit-Reset": "{iso:30}", "RateLimit-Reason": "jira-burst-based"},
             {"errorMessages": ["Rate limit exceeded."]}, 30),
    "confluence": (429, {"Retry-After": "20"}, {"errors": [{"status": 429, "title": "Too Many Requests"}]}, 20),
    "linear": (400, {"X-RateLimit-Requests-Remaining": "0", "X-RateLimit-Requests-Reset": "{epoch_ms:60}"},
               {"errors": [{"message": "Rate limit exceeded", "extensions": {"code": "RATELIMITED"}}]}, 60),
    "asana": (429, {"Retry-After": "40"}, {"errors": [{"message": "You have made too many requests recently."}]}, 40),
    "notion": (429, {"Retry-After": "20"}, {"object": "error", "status": 429, "code": "rate_limited",
                                            "message": "You have been rate limited."}, 20),
    "airtable": (429, {}, {"errors": [{"error": "RATE_LIMIT_REACHED", "message": "Rate limit exceeded."}]}, 30),
    "zendesk": (429, {"Retry-After": "50"}, {"error": "APIRateLimitExceeded",
                                             "description": "Number of allowed API requests per minute exceeded"}, 50),
    "intercom": (429, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "{epoch:10}"}, {"type": "error.list", "errors": [
        {"code": "rate_limit_exceeded", "message": "Exceeded rate limit of 1000 in 10_seconds"}]}, 10),
    "shopify": (429, {"Retry-After": "2.0"}, {"errors": "Exceeded 2 calls per second for api client."}, 2),
    "quickbooks": (429, {}, {"Fault": {"Error": [{"Message": "message=ThrottleExceeded; errorCode=003001",
                                                  "Detail": "The request limit was reached."}]}}, 60),
    "xero": (429, {"Retry-After": "35", "X-Rate-Limit-Problem": "minute"}, "Rate limit exceeded", 35),
    "pipedrive": (429, {"Retry-After": "2", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "2"},
                  {"success": False, "error": "Request over limit"}, 2),
    "close": (429, {"RateLimit": "limit=40, remaining=0, reset=4", "Retry-After": "4"},
              {"error": {"rate_reset": 4.0, "message": "API call count exceeded for this 15 second window"}}, 4),
    "zoho_crm": (429, {}, {"code": "TOO_MANY_REQUESTS", "message": "too many requests", "status": "error"}, 1),
    "sendgrid": (429, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "{epoch:60}"},
                 {"errors": [{"field": None, "message": "too many requests"}]}, 60),
    "twilio": (429, {}, {"code": 20429, "message": "Too Many Requests", "status": 429}, 1),
    "zoom": (429, {}, {"code": 429, "message": "You have reached the maximum per-second rate limit for this API."}, 1),
    "dropbox": (429, {"Retry-After": "15"}, {"error_summary": "too_many_requests/..", "error": {"retry_after": 15}}, 15),
    "box": (429, {"Retry-After": "12"}, {"type": "error", "status": 429, "code": "rate_limit_exceeded",
                                         "message": "Request rate limit exceeded, please try again later"}, 12),
    "microsoft": (429, {"Retry-After": "25"}, {"error": {"code": "TooManyRequests", "message": "Please retry later."}}, 25),
    "monday": (429, {"Retry-After": "30"}, {"errors": [{"message": "Rate limit exceeded",
                                                        "extensions": {"code": "RATE_LIMIT_EXCEEDED"}}]}, 30),
    "clickup": (429, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "{epoch:50}"},
                {"err": "Rate limit reached", "ECODE": "APP_002"}, 50),
    "bitbucket": (429, {}, {"type": "error", "error": {"message": "Rate limit for this resource has been exceeded"}}, 60),
    "discord": (429, {"Retry-After": "3", "X-RateLimit-Scope": "user", "X-RateLimit-Remaining": "0",
                      "X-RateLimit-Reset-After": "2.7"},
                {"message": "You are being rate limited.", "retry_after": 2.7, "global": False}, 3),
    "calendly": (429, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "40"},
                 {"title": "Too Many Requests", "message": "Rate limit exceeded"}, 40),
    "greenhouse": (429, {"Retry-After": "8", "X-RateLimit-Remaining": "0"}, {"message": "Too Many Requests"}, 8),
    "okta": (429, {"X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": "{epoch:55}"},
             {"errorCode": "E0000047", "errorSummary": "API call exceeded rate limit due to too many requests."}, 55),
    "pagerduty": (429, {}, {"error": {"message": "Rate Limit Exceeded", "code": 2020}}, 1),
    "servicenow": (429, {"X-RateLimit-Limit": "100", "X-RateLimit-Reset": "{epoch:70}", "X-RateLimit-Rule": "r1"},
                   {"error": {"message": "Too many requests"}, "status": "failure"}, 70),
    "bigcommerce": (429, {"X-Rate-Limit-Requests-Left": "0", "X-Rate-Limit-Time-Reset-Ms": "15000"},
                    {"status": 429, "title": "Too many requests"}, 15),
    "square": (429, {}, {"errors": [{"category": "RATE_LIMIT_ERROR", "code": "RATE_LIMITED", "detail": "Rate limited"}]}, 1),
    "typeform": (429, {}, {"code": "TOO_MANY_REQUESTS", "description": "Too many requests"}, 1),
    "figma": (429, {"Retry-After": "60", "X-Figma-Rate-Limit-Type": "high"}, {"status": 429, "err": "Rate limit exceeded"}, 60),
    "sentry": (429, {"X-Sentry-Rate-Limit-Remaining": "0", "X-Sentry-Rate-Limit-Reset": "{epoch:20}"},
               {"detail": "You are attempting to use this endpoint too frequently."}, 20),
    # Marketo says it in an HTTP 200, in its compact JSON
    "marketo": (200, {}, {"requestId": "e42b#14272d07d78", "success": False, "errors": [
        {"code": "606", "message": "Max rate limit '100' exceeded with in '20' secs"}]}, 20),
    "auth0": (429, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "{epoch:30}"},
              {"statusCode": 429, "error": "Too Many Requests", "message": "Global limit has been reached"}, 30),
    "gusto": (429, {"Retry-After": "45"}, {"errors": [{"category": "rate_limit_exceeded", "message": "Too many"}]}, 45),
    "custom": (429, {}, "slow down", 1),
}
assert all(wait > DEADLINE for *_, wait in LIMITED.values())

# provider: (status, body, the provider's message in it)
ERRORS = {
    "stripe": (400, {"error": {"type": "invalid_request_error", "message": "No such customer: 'cus_x'"}},
               "No such customer: 'cus_x'"),
    "salesforce": (400, [{"message": "Required fields are missing: [LastName]", "errorCode": "REQUIRED_FIELD_MISSING"}],
                   "Required fields are missing: [LastName]"),
    "hubspot": (400, {"status": "error", "message": "Property values were not valid", "category": "VALIDATION_ERROR"},
                "Property values were not valid"),
    "github": (422, {"message": "Validation Failed", "errors": [{"code": "missing_field"}]}, "Validation Failed"),
    "slack": (404, {"ok": False, "error": "unknown_method"}, "unknown_method"),
    "googledrive": (404, {"error": {"code": 404, "message": "File not found: 1a2b.", "errors": []}}, "File not found: 1a2b."),
    "googlecalendar": (404, {"error": {"code": 404, "message": "Not Found"}}, "Not Found"),
    "gmail": (400, {"error": {"code": 400, "message": "Invalid id value"}}, "Invalid id value"),
    "gitlab": (404, {"message": "404 Project Not Found"}, "404 Project Not Found"),
    "jira": (400, {"errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}},
             "Issue does not exist or you do not have permission to see it."),
    "confluence": (404, {"errors": [{"status": 404, "code": "NOT_FOUND", "title": "Page not found", "detail": None}]},
                   "Page not found"),
    "linear": (400, {"errors": [{"message": "Entity not found: Issue", "extensions": {"code": "INVALID_INPUT"}}]},
               "Entity not found: Issue"),
    "asana": (400, {"errors": [{"message": "workspace: Missing input", "help": "See the docs"}]}, "workspace: Missing input"),
    "notion": (400, {"object": "error", "status": 400, "code": "validation_error",
                     "message": "body failed validation: body.parent should be defined."},
               "body failed validation: body.parent should be defined."),
    "airtable": (422, {"error": {"type": "INVALID_REQUEST_UNKNOWN", "message": "Invalid request: parameter validation failed."}},
                 "Invalid request: parameter validation failed."),
    "zendesk": (404, {"error": "RecordNotFound", "description": "Not found"}, "RecordNotFound"),
    "intercom": (404, {"type": "error.list", "errors": [{"code": "not_found", "message": "User Not Found"}]}, "User Not Found"),
    "shopify": (404, {"errors": "Not Found"}, "Not Found"),
    "quickbooks": (400, {"Fault": {"Error": [{"Message": "Object Not Found", "Detail": "Something was made inactive.",
                                              "code": "610"}], "type": "ValidationFault"}}, "Object Not Found"),
    "xero": (400, {"ErrorNumber": 10, "Type": "ValidationException", "Message": "A validation exception occurred"},
             "A validation exception occurred"),
    "pipedrive": (404, {"success": False, "error": "Deal not found", "error_info": "See the docs"}, "Deal not found"),
    "close": (400, {"error": "Invalid lead id"}, "Invalid lead id"),
    "zoho_crm": (400, {"code": "INVALID_DATA", "details": {}, "message": "the id given seems to be invalid",
                       "status": "error"}, "the id given seems to be invalid"),
    "sendgrid": (400, {"errors": [{"field": "from", "message": "The from address does not match a verified Sender Identity."}]},
                 "The from address does not match a verified Sender Identity."),
    "twilio": (404, {"code": 20404, "message": "The requested resource was not found", "status": 404},
               "The requested resource was not found"),
    "zoom": (404, {"code": 3001, "message": "Meeting does not exist: 123."}, "Meeting does not exist: 123."),
    "dropbox": (409, {"error_summary": "path/not_found/..", "error": {".tag": "path"}}, "path/not_found/.."),
    "box": (404, {"type": "error", "status": 404, "code": "not_found", "message": "Item not found"}, "Item not found"),
    "microsoft": (404, {"error": {"code": "ErrorItemNotFound", "message": "The specified object was not found in the store."}},
                  "The specified object was not found in the store."),
    "monday": (400, {"errors": [{"message": "Column not found", "extensions": {"code": "InvalidColumnIdException"}}]},
               "Column not found"),
    "clickup": (400, {"err": "Task not found", "ECODE": "ITEM_013"}, "Task not found"),
    "bitbucket": (404, {"type": "error", "error": {"message": "Repository not found"}}, "Repository not found"),
    "discord": (404, {"code": 10003, "message": "Unknown Channel"}, "Unknown Channel"),
    "calendly": (404, {"title": "Resource Not Found", "message": "The server could not find the requested resource."},
                 "The server could not find the requested resource."),
    "greenhouse": (404, {"message": "Resource not found"}, "Resource not found"),
    "okta": (404, {"errorCode": "E0000007", "errorSummary": "Not found: Resource not found: 00u1 (User)"},
             "Not found: Resource not found: 00u1 (User)"),
    "pagerduty": (400, {"error": {"message": "Invalid Input Provided", "code": 2001, "errors": ["Name has already been taken."]}},
                  "Invalid Input Provided"),
    "servicenow": (404, {"error": {"message": "No Record found", "detail": "Record doesn't exist"}, "status": "failure"},
                   "No Record found"),
    "bigcommerce": (404, {"status": 404, "title": "The requested resource was not found.", "type": "/api-docs"},
                    "The requested resource was not found."),
    "square": (400, {"errors": [{"category": "INVALID_REQUEST_ERROR", "code": "NOT_FOUND",
                                 "detail": "Could not find location with id `L1`."}]}, "Could not find location with id `L1`."),
    "typeform": (404, {"code": "FORM_NOT_FOUND", "description": "Non existing form with uid abc"},
                 "Non existing form with uid abc"),
    "figma": (404, {"status": 404, "err": "Not found"}, "Not found"),
    "sentry": (404, {"detail": "The requested resource does not exist"}, "The requested resource does not exist"),
    "marketo": (400, {"requestId": "e42b", "success": False, "errors": [{"code": "1003", "message": "Invalid lead id"}]},
                "Invalid lead id"),
    "auth0": (404, {"statusCode": 404, "error": "Not Found", "message": "The user does not exist.",
                    "errorCode": "inexistent_user"}, "The user does not exist."),
    "gusto": (422, {"errors": [{"error_key": "email", "category": "invalid_attribute_value",
                                "message": "Email is not a valid email"}]}, "Email is not a valid email"),
    "custom": (400, {"problem": "bad input"}, '{"problem":"bad input"}'),  # no path named: the whole answer
}

# The providers that deduplicate writes by a header, and its name: a POST carrying it may be sent twice.
IDEMPOTENT = {
    "stripe": "Idempotency-Key",  # docs.stripe.com/api/idempotent_requests
    "xero": "Idempotency-Key",  # xero_accounting.yaml: on its POST and PUT operations
}

_PLACEHOLDER = re.compile(r"\{(epoch|epoch_ms|iso|date):([\d.]+)\}")


def rendered(value: str) -> str:
    """A header value with its time placeholders filled in, as of now."""
    def fill(match: re.Match) -> str:
        at = time.time() + float(match[2])
        form = match[1]
        if form == "epoch":
            return str(int(at))
        if form == "epoch_ms":
            return str(int(at * 1000))
        if form == "iso":
            return datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return email.utils.formatdate(at, usegmt=True)
    return _PLACEHOLDER.sub(fill, value)


def encoded(body) -> bytes:
    return body.encode() if isinstance(body, str) else json.dumps(body, separators=(",", ":")).encode()


class Providers:
    """The loopback emulator: /{provider}/{scenario}/... answers as that provider does: `low` with
    LOW's headers, `limited` first with LIMITED's answer, `error` with ERRORS', `flaky` first with
    a 503; anything else (and later calls) 200. Each request's arrival is kept per scenario."""

    def __init__(self):
        self.port = 0
        self.arrivals: dict[tuple[str, str], list[float]] = defaultdict(list)

    def base_url(self, provider: str, scenario: str) -> str:
        return f"http://127.0.0.1:{self.port}/{provider}/{scenario}"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        received = await read_request(scope, receive)
        provider, scenario = received.path.strip("/").split("/")[:2]
        calls = self.arrivals[provider, scenario]
        calls.append(received.at)
        status, headers, body = 200, {}, {"ok": True}
        if scenario == "low":
            headers = LOW[provider][0]
        elif scenario == "limited" and len(calls) == 1:
            status, headers, body, _ = LIMITED[provider]
        elif scenario == "error":
            status, body, _ = ERRORS[provider]
        elif scenario == "flaky" and len(calls) == 1:
            status, body = 503, {"error": "unavailable"}
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"),
            *((name.encode(), rendered(value).encode()) for name, value in headers.items())]})
        await send({"type": "http.response.body", "body": encoded(body)})


@pytest.fixture(scope="module")
async def emulator():
    providers = Providers()
    providers.port, server, task = await serve_on_loopback(providers)
    yield providers
    server.should_exit = True
    await finish("stopping the providers' emulator", task)


@pytest.fixture(scope="module")
async def headwater(tmp_path_factory):
    """One server and one client for the whole module: every case has credentials of its own."""
    database = tmp_path_factory.mktemp("limits") / "headwater.db"
    settings = settings_for(f"sqlite:///{database}")
    server = await Server.start(settings)
    client = await _client_for(Running(server, settings), "acme")
    yield client
    await _close_client(client)
    await finish("stopping the server", server.stop(grace=1))


def kind_of(provider: str) -> str:
    return next(iter(CATALOGUE.providers[provider].credential_kinds))


async def credential(client, emulator: Providers, provider: str, scenario: str) -> str:
    properties = properties_for(provider, kind_of(provider), emulator.base_url(provider, scenario))
    made = await client.rest.post("/v1/credentials", json={"provider": provider, "properties": properties})
    assert made.status_code == 200, made.text
    return made.json()["id"]


async def proxied(client, credential_id: str):
    return await client.rest.get(f"/v1/proxy/credential/{credential_id}/some/records",
                                 headers={"x-headwater-timeout": str(DEADLINE)})


async def paused_for(client, credential_id: str) -> tuple[float, str]:
    """Seconds the credential's budget is paused for from now, and why (0, "" when it is not)."""
    budget = (await client.rest.get(f"/v1/credentials/{credential_id}/budget")).json()
    if not budget["pause"]:
        return 0.0, ""
    ends = datetime.datetime.fromisoformat(budget["pause"]["ends_at"].replace("Z", "+00:00"))
    return ends.timestamp() - time.time(), budget["pause"]["reason"]


def close_to(seconds: float, expected: float) -> bool:
    """A pause of `expected` seconds, seen a moment later: resets in whole epoch seconds may be up
    to 1 s early, and the time taken to look may shorten it a little more."""
    return expected - 1.5 <= seconds <= expected + 0.1


def test_every_provider_has_its_answers_written_here():
    assert sorted(LIMITED) == sorted(ERRORS) == sorted(PROVIDERS)
    default = Limits().remaining
    reading_budgets = {p for p in PROVIDERS
                       if CATALOGUE.providers[p].credential_kinds[kind_of(p)].limits.remaining != default}
    # every provider whose entry reads budget headers has an answer here that spends them; the
    # others in LOW send the IETF field, which every entry reads by default
    assert reading_budgets <= set(LOW) and set(LOW) - reading_budgets <= {"close", "custom"}
    deduplicating = {p: CATALOGUE.providers[p].credential_kinds[kind_of(p)].retry.idempotency_header.lower()
                     for p in PROVIDERS}
    assert {p: h for p, h in deduplicating.items() if h} == {p: h.lower() for p, h in IDEMPOTENT.items()}


@pytest.mark.parametrize("provider", sorted(LOW))
async def test_a_spent_budget_pauses_the_credential_until_the_providers_stated_reset(headwater, emulator, provider):
    credential_id = await credential(headwater, emulator, provider, "low")

    answer = await proxied(headwater, credential_id)
    seconds, reason = await paused_for(headwater, credential_id)

    assert answer.status_code == 200, answer.text
    assert close_to(seconds, LOW[provider][1]), f"paused for {seconds:.2f} s, not {LOW[provider][1]} s"
    assert "requests are left until its reset" in reason


@pytest.mark.parametrize("provider", sorted(LIMITED))
async def test_a_rate_limited_answer_pauses_the_credential_and_later_calls_get_429_with_retry_after(
        headwater, emulator, provider):
    status, _, _, wait = LIMITED[provider]
    credential_id = await credential(headwater, emulator, provider, "limited")

    first = await proxied(headwater, credential_id)

    seconds, reason = await paused_for(headwater, credential_id)
    later = await proxied(headwater, credential_id)

    assert first.status_code == status  # the provider's own answer, passed on
    assert close_to(seconds, wait), f"paused for {seconds:.2f} s, not {wait} s"
    assert reason.endswith(f"answered HTTP {status}: rate limited")
    assert later.status_code == 429, later.text
    assert wait - 2 <= int(later.headers["retry-after"]) <= wait + 1
    assert len(emulator.arrivals[provider, "limited"]) == 1  # nothing more reached the provider


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_post_is_sent_again_only_to_a_provider_that_deduplicates_by_its_header(headwater, emulator, provider):
    credential_id = await credential(headwater, emulator, provider, "flaky")

    answer = await headwater.rest.post(f"/v1/proxy/credential/{credential_id}/some/records", json={"name": "Acme"},
                                       headers={IDEMPOTENT.get(provider, "Idempotency-Key"): "key-1",
                                                "x-headwater-timeout": "5"})

    sent = len(emulator.arrivals[provider, "flaky"])
    if provider in IDEMPOTENT:
        assert (answer.status_code, sent) == (200, 2), answer.text
    else:
        assert (answer.status_code, sent) == (503, 1), answer.text


@pytest.mark.parametrize("provider", sorted(ERRORS))
def test_an_error_answer_carries_the_providers_own_message(provider):
    status, body, message = ERRORS[provider]
    kind = CATALOGUE.providers[provider].credential_kinds[kind_of(provider)]
    response = UpstreamResponse(status, [("content-type", "application/json")], encoded(body), 0.01)

    error = answer_error(classify(response, kind.limits, kind.retry), response, "Acme API",
                         message_at=kind.retry.error_message, provider="Acme", credential="cred_1", subject="Record 1")

    assert f"`{message}`" in error.message


def first_written(provider: str) -> str | None:
    """The first of the provider's collections that mutations create records in, if any."""
    collections = CATALOGUE.providers[provider].collections
    return next((key for key, c in collections.items() if c.write and c.write.create), None)


WRITTEN = [(p, first_written(p)) for p in PROVIDERS if first_written(p)]


# Where a write's error names a field other than the provider's other answers do (Zendesk: a
# refused write's `description` says what was wrong; a refused credential has only `error`).
WRITE_MESSAGES = {"zendesk": "Not found"}
# What a collection's writes need in the sync's metadata (Airtable's base and table).
SYNC_METADATA = {"airtable": {"base_id": "appLimits", "table": "tblLimits"}}


@pytest.mark.parametrize("provider, collection", WRITTEN)
async def test_a_mutation_refused_by_the_provider_answers_with_the_providers_message(
        headwater, emulator, provider, collection):
    message = WRITE_MESSAGES.get(provider) or ERRORS[provider][2]
    stream = await headwater.rest.post("/v1/streams", json={"name": f"limits-{provider}"})
    properties = properties_for(provider, kind_of(provider), emulator.base_url(provider, "error"))
    sync = await headwater.rest.post("/v1/syncs", json={
        "provider": provider, "stream_id": stream.json()["id"], "collection_ids": [f"{provider}:{collection}"],
        "credential": {"properties": properties}, **({"metadata": SYNC_METADATA[provider]} if provider in SYNC_METADATA else {})})
    assert sync.status_code == 200, sync.text

    answer = await headwater.rest.post("/v1/mutations/run", json={
        "kind": "create", "sync_id": sync.json()["id"], "collection_id": f"{provider}:{collection}",
        "records": [{"data": {"name": "Acme"}}]})

    assert answer.status_code in (400, 404), answer.text
    assert f"`{message}`" in answer.json()["message"]
