"""What an upstream answer means: read once, by one function, from the provider's catalogue data.

    outcome = classify(response, account.kind.limits, account.kind.retry)
    outcome.kind      # Kind.PAUSE: GitHub's 403 with x-ratelimit-remaining: 0
    outcome.pause     # 1740.0: seconds until x-ratelimit-reset; the credential's budget waits them out
    outcome.repeat    # True: worth sending again (if the request is safe to repeat, and in time)

The outcomes, and what each becomes (`ERRORS`, `SYNC_HEALTH`, `answer_error`):

    kind         the answer                                     error (mutations)          sync
    SUCCESS      1xx-3xx                                        -                          healthy
    PAUSE        rate limited (limits.rate_limited)             429 + Retry-After          degraded
    RETRY        a 5xx (repeated if in retry.transient)         502 "<API> failed"         degraded
    TIMEOUT      no answer in time, 408, 504                    504 "<API> timed out"      degraded
    UNREACHABLE  refused, reset, DNS or TLS failure             502 "could not be reached" degraded
    REFRESH      401: refresh the token and send it once more   400 "refused credential"   error
    PERMANENT    any other 4xx, with the provider's message     400 (403: "refused         error
                                                                credential"), 404

Any answer may also say the credential's budget is spent (`limits.remaining` at or below
`limits.reserve`): `pause` is then set on a SUCCESS too, and the gateway pauses the budget before
the provider has to answer 429.
"""

from __future__ import annotations

import datetime
import email.utils
import enum
import json
import math
import re
import time
from typing import NamedTuple

import grpc

from headwater.errors import ApiError
from headwater.upstream.catalogue import Limits, RetryPolicy
from headwater.upstream.reading import dig
from headwater.upstream.transport import UpstreamResponse

MAX_MESSAGE_CHARS = 500
# The longest pause an answer can cause: a day, the longest window a provider counts (Salesforce's
# rolling 24 h). A wait beyond it is a misread or a broken header, not a reason to stop a
# credential for weeks.
MAX_PAUSE_SECONDS = 86_400.0


class Kind(enum.Enum):
    SUCCESS = "success"
    PAUSE = "pause"
    RETRY = "retry"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    REFRESH = "refresh"
    PERMANENT = "permanent"


class Outcome(NamedTuple):  # a tuple: made for answers with budget headers, so it must be cheap
    kind: Kind
    status: int = 0  # the answer's HTTP status (0: there was no answer)
    pause: float | None = None  # seconds to pause the credential's budget for, if any
    repeat: bool = False  # worth sending again, when the request is safe to repeat and time allows
    remaining: int | None = None  # the budget left, as the answer says


SUCCESS = Outcome(Kind.SUCCESS, 200)
NO_ANSWER_IN_TIME = Outcome(Kind.TIMEOUT, repeat=True)
UNREACHABLE = Outcome(Kind.UNREACHABLE, repeat=True)


def classify(response: UpstreamResponse, limits: Limits, retry: RetryPolicy, now: float | None = None) -> Outcome:
    """The outcome of one answer (`now`: the epoch time, for reset headers; default the clock)."""
    status = response.status
    wanted = limits.header_names
    found: dict[str, str] = {}
    for name, value in response.headers:  # one pass; most answers carry none of these
        low = name.lower()
        if low in wanted and low not in found:
            found[low] = value
    remaining = reset = None
    if found:
        remaining, reset = _remaining(limits, found)
    # a 2xx counts as rate limited only where a rule names its status (Marketo's 200 with error 606)
    limited = status in limits.rate_limited_successes and _rate_limited(limits, status, found, response.body)
    if status < 400 and not limited:
        if remaining is None or remaining > limits.reserve:
            return SUCCESS if status == 200 and remaining is None else Outcome(Kind.SUCCESS, status, remaining=remaining)
        return Outcome(Kind.SUCCESS, status, _wait(limits, found, reset, now), remaining=remaining)
    if limited or _rate_limited(limits, status, found, response.body):
        return Outcome(Kind.PAUSE, status, _wait(limits, found, reset, now), True, remaining)
    spent = remaining is not None and remaining <= limits.reserve
    pause = _wait(limits, found, reset, now) if spent else None
    if status == 401:
        return Outcome(Kind.REFRESH, status, pause, remaining=remaining)
    if status in (408, 504):
        return Outcome(Kind.TIMEOUT, status, pause, status in retry.transient, remaining)
    if status >= 500:
        if pause is None and "retry-after" in found:  # a 503 that says when to come back
            pause = retry_after_seconds([("retry-after", found["retry-after"])], now)
            pause = None if pause is None else min(pause, MAX_PAUSE_SECONDS)
        return Outcome(Kind.RETRY, status, pause, status in retry.transient, remaining)
    return Outcome(Kind.PERMANENT, status, pause, remaining=remaining)


def _rate_limited(limits: Limits, status: int, found: dict[str, str], body: bytes) -> bool:
    for rule in limits.rate_limited:
        if rule.status != status:
            continue
        if rule.header and (rule.header not in found or (rule.equals and found[rule.header].strip() != rule.equals)):
            continue
        if rule.body_contains and rule.body_contains.encode() not in body:
            continue
        return True
    return False


_USAGE = re.compile(r"(\d+)\s*/\s*(\d+)")
_IETF_REMAINING = re.compile(r"(?:^|[;,\s])(?:r|remaining)\s*=\s*(\d+)")
_IETF_RESET = re.compile(r"(?:^|[;,\s])(?:t|reset)\s*=\s*(\d+(?:\.\d+)?)")  # Close's reset=0.5


def _remaining(limits: Limits, found: dict[str, str]) -> tuple[int | None, float | None]:
    """The budget left: the lowest that the `limits.remaining` headers found say (Xero's minute
    and day budgets: the one nearer its end counts), and the reset in seconds that same header
    gives (the IETF field's `t=`)."""
    lowest = reset = None
    for spec in limits.remaining:
        value = found.get(spec.header)
        if value is None:
            continue
        left, its_reset = _budget_left(spec.form, value)
        if left is not None and (lowest is None or left < lowest):
            lowest, reset = left, its_reset
    return lowest, reset


def _budget_left(form: str, value: str) -> tuple[int | None, float | None]:
    if form == "number":
        try:
            return int(float(value.strip())), None
        except ValueError:
            return None, None
    if form == "usage":  # Sforce-Limit-Info: api-usage=18/15000; X-Shopify-Shop-Api-Call-Limit: 32/40
        match = _USAGE.search(value)
        return (max(0, int(match[2]) - int(match[1])), None) if match else (None, None)
    match = _IETF_REMAINING.search(value)  # RateLimit: "default";r=0;t=30, or limit=.., remaining=0, reset=30
    if not match:
        return None, None
    reset = _IETF_RESET.search(value)
    return int(match[1]), float(reset[1]) if reset else None


def _wait(limits: Limits, found: dict[str, str], reset: float | None, now: float | None) -> float:
    """Seconds until the provider takes requests again (at most MAX_PAUSE_SECONDS)."""
    return min(_stated_wait(limits, found, reset, now), MAX_PAUSE_SECONDS)


def _stated_wait(limits: Limits, found: dict[str, str], reset: float | None, now: float | None) -> float:
    """Seconds until the provider takes requests again, as the answer says: Retry-After, else the
    first of `limits.wait` found, else the remaining header's own reset, else `limits.pause_seconds`."""
    if "retry-after" in found:
        seconds = retry_after_seconds([("retry-after", found["retry-after"])], now)
        if seconds is not None:
            return seconds
    for spec in limits.wait:
        value = found.get(spec.header)
        if value is not None:
            seconds = _wait_seconds(value.strip(), spec.unit, time.time() if now is None else now)
            if seconds is not None:
                return seconds
    return reset if reset is not None else float(limits.pause_seconds)


def _wait_seconds(value: str, unit: str, now: float) -> float | None:
    if unit == "http_date":
        return _date_seconds(value, now)
    if unit == "iso8601":  # Jira's X-RateLimit-Reset: 2026-12-01T17:00:00.000Z
        try:
            when = datetime.datetime.fromisoformat(value)
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        return max(0.0, when.timestamp() - now)
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    seconds = {"seconds": number, "ms": number / 1000, "epoch": number - now, "epoch_ms": number / 1000 - now}[unit]
    return max(0.0, seconds)


def _date_seconds(value: str, now: float | None) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_after_seconds(headers: list[tuple[str, str]], now: float | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date."""
    for name, value in headers:
        if name.lower() != "retry-after":
            continue
        value = value.strip()
        try:
            seconds = float(value)
        except ValueError:
            return _date_seconds(value, now)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    return None


def error_message(path: str, body: bytes) -> str:
    """The provider's own message in an error answer: at the dotted `path` (in the first item of
    an answer that is a list), else the answer's text; at most MAX_MESSAGE_CHARS."""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if isinstance(answer, list) and answer:
        answer = answer[0]
    found = dig(answer, path) if path and isinstance(answer, dict) else None
    text = found if isinstance(found, str) else body.decode("utf-8", "replace")
    return " ".join(text.split())[:MAX_MESSAGE_CHARS]


# --- what an outcome becomes ------------------------------------------------------------------

class UpstreamFailure(ApiError):
    """The error a caller sees for an upstream call that failed, knowing its outcome's kind
    (so the sync engine reads its health from SYNC_HEALTH, not from the gRPC code)."""

    def __init__(self, kind: Kind, code: grpc.StatusCode, message: str, **kwargs):
        super().__init__(code, message, **kwargs)
        self.kind = kind


# kind -> (gRPC code, HTTP status if not the code's own, message). Placeholders: {api} "Stripe API",
# {status}, {message} (the provider's), {credential}, {provider} "Stripe".
ERRORS: dict[Kind, tuple[grpc.StatusCode, int | None, str]] = {
    Kind.PAUSE: (grpc.StatusCode.RESOURCE_EXHAUSTED, None, "{api} rate limit exceeded: `{message}`"),
    Kind.RETRY: (grpc.StatusCode.UNAVAILABLE, 502, "{api} failed (HTTP {status}): `{message}`"),
    Kind.TIMEOUT: (grpc.StatusCode.DEADLINE_EXCEEDED, None, "{api} timed out"),
    Kind.UNREACHABLE: (grpc.StatusCode.UNAVAILABLE, 502, "{api} could not be reached (connection refused or reset)"),
    Kind.REFRESH: (grpc.StatusCode.FAILED_PRECONDITION, None,
                   "{provider} refused credential {credential} (HTTP {status}): `{message}`"),
    Kind.PERMANENT: (grpc.StatusCode.INVALID_ARGUMENT, None, "{provider} validation error: `{message}`"),
}
# A permanent answer whose status says more than "your input was refused".
PERMANENT_BY_STATUS: dict[int, tuple[grpc.StatusCode, str]] = {
    401: ERRORS[Kind.REFRESH][::2],
    403: ERRORS[Kind.REFRESH][::2],
    404: (grpc.StatusCode.NOT_FOUND, "{provider} has no {subject}: `{message}`"),
}

SYNC_HEALTH: dict[Kind, str] = {
    Kind.SUCCESS: "healthy",
    Kind.PAUSE: "degraded",
    Kind.RETRY: "degraded",
    Kind.TIMEOUT: "degraded",
    Kind.UNREACHABLE: "degraded",
    Kind.REFRESH: "error",
    Kind.PERMANENT: "error",
}


def failure(kind: Kind, api: str, *, status: int = 0, message: str = "", provider: str = "", credential: str = "",
            subject: str = "", retry_after: float | None = None) -> UpstreamFailure:
    """The documented error of an outcome (ERRORS), e.g. failure(Kind.TIMEOUT, "Stripe API")."""
    code, http_status, template = ERRORS[kind]
    if kind is Kind.PERMANENT and status in PERMANENT_BY_STATUS:
        code, template = PERMANENT_BY_STATUS[status]
        http_status = None
    text = template.format(api=api, status=status, message=message or f"HTTP {status}",
                           provider=provider or api.removesuffix(" API"), credential=credential, subject=subject)
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after is not None else None
    return UpstreamFailure(kind, code, text, headers=headers, http_status=http_status)


def answer_error(outcome: Outcome, response: UpstreamResponse, api: str, *, message_at: str, provider: str,
                 credential: str, subject: str) -> UpstreamFailure:
    """The documented error for a non-2xx answer a caller cannot pass on as it is (a mutation's
    write): its outcome's, carrying the provider's message (found at `message_at`); an answer
    that is no error but not the 2xx expected (a 3xx) is a permanent one."""
    kind = Kind.PERMANENT if outcome.kind is Kind.SUCCESS else outcome.kind
    return failure(kind, api, status=response.status, message=error_message(message_at, response.body),
                   provider=provider, credential=credential, subject=subject,
                   retry_after=outcome.pause if kind is Kind.PAUSE else None)


def health_of(error: ApiError) -> str:
    """A failed call's sync health: its outcome's; an error raised before any answer (the token
    refresh, the pacer) counts as transient unless it refuses the credential or the request."""
    if isinstance(error, UpstreamFailure):
        return SYNC_HEALTH[error.kind]
    transient = (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
    return "degraded" if error.code in transient else "error"
