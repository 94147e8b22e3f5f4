"""Pacing: one budget per credential for every upstream request made with it.

A budget is one or more windows and a concurrency cap. A window allows at most `allowed_requests`
request starts in ANY span of `interval` seconds (a sliding window, never a token bucket, which
lets up to twice the rate through one window); a request takes a slot in EVERY window of its
budget (HubSpot: 100 per 10 s and 250,000 per day). At most `max_concurrent` requests are in
flight (0 = no cap). Over budget a request waits its turn, first come first served, bounded by its
deadline; when its turn would come after the deadline it fails at once with
`BudgetExhausted(retry_after)`. An upstream 429/503 with Retry-After pauses the key (with a reason,
which `state` shows).

    budget = Budget(100, 10, more=(Window(250_000, 86_400),))
    async with pacer.slot(credential_id, budget, timeout=remaining) as permit:
        ...                      # permit.waited: seconds spent waiting for the turn
                                 # permit.windows: each window's remaining and reset (RateLimit headers)
    await pacer.state(credential_id, budget)   # each window's use, the callers waiting, the pause

`make_pacer(None)` is the in-process pacer (one process); `make_pacer(url)` shares the budget
between processes through Redis and raises `PacerUnavailable` when Redis cannot be reached, so a
request is never sent unpaced. Modules: `_types` (the values), `in_process`, `redis_pacer` and its
Lua scripts (`acquire.lua`, `confirm.lua`, `give_back.lua`, `pause.lua`, `state.lua`, and
`_buckets.lua`, the counted windows' helpers that acquire and state share).

How a turn is worked out (both implementations):
  * Rate: a log of the start times reserved for the key. A new request's slot is the latest of
    now, paused-until, the last reservation, and for each window the earliest time it has room:
    for a window of N per interval, the N-th most recent start + interval. It is reserved at once
    in every window (one slot, so call order is service order; through Redis one script does it,
    atomically) and the caller sleeps until it. The log keeps every future reservation and, of the
    past ones, the last N (+ a few) that are less than an interval old, for the largest N and
    interval of the exactly logged windows.
  * Long windows: a window allowing more than EXACT_LOG_LIMIT (1,000) requests (250,000 per day)
    is not followed by the log (it would hold 250,000 start times per credential) but by counts:
    the starts that leave the log go into buckets of at most interval/BUCKETS (100) each, and a
    bucket counts until its LAST start leaves the window. So a start is counted for at most
    interval * (1 + 1/100) (a day window frees its room up to 14.4 min late, never early: the
    window is still never exceeded), and such a window holds at most BUCKETS + 2 buckets per key,
    however many requests it allows. Where the window is full, its room comes back when the
    oldest buckets (then the log's oldest starts) leave it.
  * Spacing: a slot that has to be waited for is also at least interval/N after the last
    reservation, for the full windows that made it wait (the smallest interval/N of the budget when
    it waits for a pause or the reservation before it). A budget with room lets a burst of N go at
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
    too, except while no window holds N starts of the last interval and the future: then no
    window can fill up, however late anyone starts). Shifts move the log only: a start leaves the
    log for the buckets once it is past (at its final time), so the buckets never need moving.
  * A caller cancelled while waiting gives its reservation back when that is exact (the log still
    holds everything a later slot depends on); otherwise the reservation just stays (conservative).
  * What a caller sees: the permit carries, for each window, the starts it still allows once this
    one is counted and the seconds until the oldest start counted leaves it (from the same
    reservation: no extra round trip); `state` reads the same without reserving.
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


