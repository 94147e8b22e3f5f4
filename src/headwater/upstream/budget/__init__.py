"""Pacing: one budget per credential for every upstream request made with it.

A budget allows at most `allowed_requests` request starts in ANY window of `interval` seconds (a
sliding window, never a token bucket, which lets up to twice the rate through one window) and at
most `max_concurrent` requests in flight (0 = no cap). Over budget a request waits its turn, first
come first served, bounded by its deadline; when its turn would come after the deadline it fails at
once with `BudgetExhausted(retry_after)`. An upstream 429/503 with Retry-After pauses the key.

    async with pacer.slot(credential_id, budget, timeout=remaining) as permit:
        ...                      # permit.waited: seconds spent waiting for the turn

`make_pacer(None)` is the in-process pacer (one process); `make_pacer(url)` shares the budget
between processes through Redis and raises `PacerUnavailable` when Redis cannot be reached, so a
request is never sent unpaced.

How a turn is worked out (both implementations):
  * Rate: a log of the start times reserved for the key. A new request's slot is
    max(now, paused-until, the last reservation, the N-th most recent reservation + interval); it
    is reserved at once (so call order is service order) and the caller sleeps until it. The log
    keeps every future reservation and, of the past ones, the last N (+ a few) that are less than
    an interval old.
  * Spacing: a slot that has to be waited for (the window is full, or the key is paused) is also
    at least interval/N after the last reservation. A budget with room lets a burst of N go at
    once; under sustained demand starts are spread evenly instead of leaving in bursts of N every
    interval, so a request that reaches the upstream a little later than it left (a new
    connection, a busy event loop) can no longer meet the whole next burst in one window.
  * Margin: the pacer is built with a margin (seconds; HEADWATER_PACING_MARGIN_MS) that it adds to
    every interval: what it plans are Headwater's starts, what the provider counts are arrivals,
    and the margin absorbs that much jitter between the two at a cost of margin/interval of the
    budget.
  * Concurrency is taken before the rate slot, so a start is never later than its reservation
    (starting later than reserved could crowd a window). Waiting for a place is FIFO.
  * Pause: pending reservations are shifted (all by the same amount, order kept) so the first one
    lands on the end of the pause; nothing starts before it. Likewise a waiter that wakes late (its
    event loop was busy) shifts its own and all later reservations by its lateness, so that the
    callers behind it, woken on time, cannot crowd one window (the window holds for actual starts,
    not only for reservations). A caller that does not wait starts right after reserving (with
    Redis, a reservation or a confirmation whose answer came back slowly counts as a late wake-up
    too, except while the log holds fewer than N reservations: then no window can fill up,
    however late anyone starts).
  * A caller cancelled while waiting gives its reservation back when that is exact (the log still
    holds everything a later slot depends on); otherwise the reservation just stays (conservative).
"""

from __future__ import annotations

from headwater.upstream.budget._types import (
    BUCKETS,
    EXACT_LOG_LIMIT,
    Budget,
    BudgetExhausted,
    BudgetState,
    Pacer,
    PacerUnavailable,
    Permit,
    Window,
    WindowState,
    WindowUse,
)
from headwater.upstream.budget.in_process import InProcessPacer
from headwater.upstream.budget.redis_pacer import RedisPacer

__all__ = [
    "BUCKETS",
    "EXACT_LOG_LIMIT",
    "Budget",
    "BudgetExhausted",
    "BudgetState",
    "InProcessPacer",
    "Pacer",
    "PacerUnavailable",
    "Permit",
    "RedisPacer",
    "Window",
    "WindowState",
    "WindowUse",
    "make_pacer",
]


def make_pacer(redis_url: str | None, margin: float = 0.0) -> Pacer:
    """In-process pacer without a URL; a Redis-shared one with it. `margin`: seconds added to every
    budget's interval (see the module's docstring)."""
    if redis_url:
        return RedisPacer(redis_url, margin=margin)
    return InProcessPacer(margin=margin)


