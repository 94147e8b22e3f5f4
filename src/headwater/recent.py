"""What this process sent upstream lately: the console's recent calls and hourly charts.

Every upstream answer passes through `Upstream.send` (proxy calls, mutation writes, sync reads),
which tells a `RecentCalls` about it once per call:

    recent = RecentCalls()
    recent.record(org_id="o1", credential_id="c1", method="GET", url="https://api.stripe.com/v1/customers?limit=3",
                  status=200, waited=0.012, upstream=0.080)
    recent.calls("o1")            # newest first: Call(method="GET", host="api.stripe.com", path="/v1/customers", ...)
    recent.minutes("c1")          # the last 60 minutes, oldest first: Minute(start, requests=1, waits=1)

What it keeps, and does not:
- the last `size` calls (a ring buffer), each with its method, host, path, status, budget wait,
  upstream time, credential and organisation; never a header, a body or the query string (auth
  given as a query parameter lives there), so never a secret;
- per credential, counts of requests and of requests that waited for the budget (at least
  WAIT_THRESHOLD) per minute, for the last `minutes` minutes; credentials silent that long are
  forgotten.
It is in memory and per process: a restart empties it, and with `--workers N` or several replicas
each process shows its own calls.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

WAIT_THRESHOLD = 0.001  # seconds: a shorter budget wait is not counted as a wait


@dataclass(frozen=True, slots=True)
class Call:
    at: float  # when it was answered, epoch seconds
    org_id: str
    credential_id: str
    method: str
    host: str
    path: str  # without the query string
    status: int  # the upstream's, or Headwater's own error status when there was no answer
    wait_ms: float  # waiting for the credential's budget
    upstream_ms: float  # waiting for the upstream's answer (the last attempt)


@dataclass(frozen=True, slots=True)
class Minute:
    start: float  # epoch seconds, a whole minute
    requests: int
    waits: int


class RecentCalls:
    def __init__(self, size: int = 200, minutes: int = 60, clock: Callable[[], float] = time.time):
        self.minutes_kept = minutes
        self._calls: deque[tuple] = deque(maxlen=size)  # (at, org, credential, method, url, status, waited, upstream)
        # credential id -> [[minute number, requests, waits], ...], oldest first, at most `minutes`
        self._counts: dict[str, deque[list[int]]] = {}
        self._clock = clock
        self._pruned_at = 0  # the minute number when silent credentials were last forgotten

    def record(self, *, org_id: str, credential_id: str, method: str, url: str, status: int,
               waited: float, upstream: float) -> None:
        now = self._clock()
        # Kept as it comes, without the query (where query-parameter auth puts a secret); split
        # into host and path when the console reads it: recording is on every call, reading rare.
        self._calls.append((now, org_id, credential_id, method, url.partition("?")[0].partition("#")[0], status,
                            waited, upstream))
        minute = int(now // 60)
        counts = self._counts.get(credential_id)
        if counts is None:
            counts = self._counts[credential_id] = deque(maxlen=self.minutes_kept)
        if not counts or counts[-1][0] != minute:
            counts.append([minute, 0, 0])
        counts[-1][1] += 1
        counts[-1][2] += waited >= WAIT_THRESHOLD
        if minute != self._pruned_at:
            self._pruned_at = minute
            oldest = minute - self.minutes_kept
            for key in [k for k, c in self._counts.items() if c[-1][0] <= oldest]:
                del self._counts[key]

    def calls(self, org_id: str, credential_id: str | None = None, limit: int = 50) -> list[Call]:
        """The organisation's latest calls (of one credential, if given), newest first."""
        found = []
        for at, org, credential, method, url, status, waited, upstream in reversed(self._calls):
            if org == org_id and credential_id in (None, credential):
                parts = urlsplit(url)
                found.append(Call(at, org, credential, method, parts.netloc.rpartition("@")[2], parts.path or "/",
                                  status, round(waited * 1000, 1), round(upstream * 1000, 1)))
                if len(found) == limit:
                    break
        return found

    def minutes(self, credential_id: str) -> list[Minute]:
        """The credential's last `minutes` minutes, oldest first, the current one last (zeros
        where it sent nothing)."""
        now = int(self._clock() // 60)
        by_minute = {m: (r, w) for m, r, w in self._counts.get(credential_id, ())}
        return [Minute(m * 60.0, *by_minute.get(m, (0, 0))) for m in range(now - self.minutes_kept + 1, now + 1)]
