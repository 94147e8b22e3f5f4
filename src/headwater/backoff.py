"""How long to wait before trying again: one capped exponential backoff with jitter, for every
retry loop in Headwater (upstream calls, sync collections, webhook deliveries, the PostgreSQL
listener).

    backoff(1, base=0.1, cap=2.0)                  # 0.1 .. 0.12 s
    backoff(3, base=0.1, cap=2.0)                  # 0.4 .. 0.48 s
    backoff(9, base=0.1, cap=2.0)                  # 2.0 .. 2.4 s: the cap, jittered
    backoff(3, base=0.1, cap=2.0, remaining=0.3)   # None: the wait would outlast the deadline

The jitter (up to JITTER above the nominal delay) keeps callers that failed together from
retrying together. A wait is never longer than the time the caller has left (`remaining`): then
the answer is None, and the caller gives up now rather than sleep past its deadline.
"""

from __future__ import annotations

import math
import random

JITTER = 0.2


def backoff(attempt: int, *, base: float, cap: float, remaining: float = math.inf) -> float | None:
    """Seconds to wait after the `attempt`-th failure (1 for the first): `base` doubled per
    attempt, at most `cap`, plus up to JITTER of it; None when that is not less than `remaining`."""
    delay = min(cap, base * 2 ** max(0, attempt - 1)) * random.uniform(1.0, 1.0 + JITTER)
    return delay if delay < remaining else None
