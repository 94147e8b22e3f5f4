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

import asyncio
import itertools
import logging
import os
import random
import uuid
from collections import deque
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

__all__ = [
    "Budget",
    "BudgetExhausted",
    "InProcessPacer",
    "Pacer",
    "PacerUnavailable",
    "Permit",
    "RedisPacer",
    "make_pacer",
]

# Past reservations kept beyond the N the rate needs, so that cancelled waiters can give theirs back.
_LOG_SLACK = 8
# A caller woken later than this after its slot shifts the reservations behind it (see _sleep_until).
_LATE_TOLERANCE = 0.001
# retry_after reported when no concurrency place freed up before the deadline (nothing better known).
_BUSY_RETRY_AFTER = 1.0


@dataclass(frozen=True)
class Budget:
    allowed_requests: int  # > 0
    interval: float  # seconds, > 0
    max_concurrent: int = 0  # 0 = no cap

    def __post_init__(self) -> None:
        if not isinstance(self.allowed_requests, int) or self.allowed_requests <= 0:
            raise ValueError(f"allowed_requests must be a positive integer, not {self.allowed_requests!r}")
        if not self.interval > 0:
            raise ValueError(f"interval must be positive, not {self.interval!r}")
        if not isinstance(self.max_concurrent, int) or self.max_concurrent < 0:
            raise ValueError(f"max_concurrent must be an integer >= 0, not {self.max_concurrent!r}")


class BudgetExhausted(Exception):
    """The request's turn would come after its deadline; nothing was reserved."""

    def __init__(self, retry_after: float):
        self.retry_after = max(float(retry_after), 1e-3)
        super().__init__(f"rate budget exhausted; retry in {self.retry_after:.3f} s")


class PacerUnavailable(Exception):
    """The shared pacer (Redis) cannot be reached; the request must not be sent."""


@dataclass
class Permit:
    waited: float = 0.0  # seconds spent waiting for the turn (rate and concurrency)
    # The reservation, for `Pacer.started`: its start time in the key's log (in-process, loop
    # time) or its member (Redis).
    reserved: float | None = None
    token: str | None = None


class Pacer(Protocol):
    def slot(self, key: str, budget: Budget, timeout: float | None) -> AbstractAsyncContextManager[Permit]: ...

    async def pause(self, key: str, seconds: float) -> None: ...

    async def started(self, key: str, budget: Budget, permit: Permit) -> None:
        """The request of `permit` (a slot of `key`) starts now. Called when it started later than
        its slot because it also waited for another budget (a sync read waits for its share, then
        for the credential's): the key's log then moves that reservation, and every later one, by
        the delay, as for a waiter woken late, so that the key's window holds for real starts."""
        ...

    async def aclose(self) -> None: ...


def make_pacer(redis_url: str | None, margin: float = 0.0) -> Pacer:
    """In-process pacer without a URL; a Redis-shared one with it. `margin`: seconds added to every
    budget's interval (see the module's docstring)."""
    if redis_url:
        return RedisPacer(redis_url, margin=margin)
    return InProcessPacer(margin=margin)


def _check_margin(margin: float) -> float:
    if not margin >= 0:
        raise ValueError(f"the pacing margin must be >= 0 seconds, not {margin!r}")
    return float(margin)


# ------------------------------------------------------------------------------------------------
# In-process
# ------------------------------------------------------------------------------------------------


class _Key:
    """Pacing state of one key in one process."""

    __slots__ = (
        "times", "paused_until", "active", "cap", "waiters", "n", "interval", "sleepers", "pauses", "pause_base",
    )

    def __init__(self) -> None:
        self.times: deque[float] = deque()  # reserved start times, ascending
        self.paused_until = 0.0
        self.active = 0  # concurrency places held (in flight, or holding one while sleeping for the rate)
        self.cap = 0  # latest max_concurrent seen
        self.waiters: deque[asyncio.Future[None]] = deque()  # FIFO of callers waiting for a place
        self.n = 0  # latest allowed_requests seen
        self.interval = 0.0  # latest interval seen
        self.sleepers = 0  # callers sleeping until their reserved slot
        # Shifts of pending reservations made while someone sleeps: (from, by, inclusive) moves every
        # slot > from (>= from if inclusive) later by `by`.
        self.pauses: list[tuple[float, float, bool]] = []
        self.pause_base = 0  # number of pauses dropped from the front of `pauses`


def _rate_slot(st: _Key, n: int, interval: float, now: float) -> float:
    slot = now
    if st.paused_until > slot:
        slot = st.paused_until
    t = st.times
    if t:
        if t[-1] > slot:
            slot = t[-1]
        if len(t) >= n:
            nth = t[-n] + interval
            if nth > slot:
                slot = nth
        if slot > now:  # a turn to wait for: spaced from the one before
            spaced = t[-1] + interval / n
            if spaced > slot:
                slot = spaced
    return slot


class _LocalSlot:
    __slots__ = ("_pacer", "_key", "_budget", "_timeout", "_st")

    def __init__(self, pacer: InProcessPacer, key: str, budget: Budget, timeout: float | None):
        self._pacer = pacer
        self._key = key
        self._budget = budget
        self._timeout = timeout
        self._st: _Key | None = None

    async def __aenter__(self) -> Permit:
        pacer = self._pacer
        budget = self._budget
        loop = asyncio.get_running_loop()
        now = start = loop.time()
        if now >= pacer._next_sweep:
            pacer._sweep(now)
        st = pacer._keys.get(self._key)
        if st is None:
            st = pacer._keys[self._key] = _Key()
        n = budget.allowed_requests
        interval = budget.interval + pacer._margin
        st.n = n
        st.interval = interval
        timeout = self._timeout
        deadline = None if timeout is None else now + (timeout if timeout > 0 else 0.0)
        cap = budget.max_concurrent
        if cap != st.cap:
            st.cap = cap
            _wake(st)
        waited = False

        # Concurrency first (FIFO): a place is held while sleeping for the rate slot.
        if cap and (st.active >= cap or st.waiters):
            predicted = _rate_slot(st, n, interval, now)
            if deadline is not None:
                if predicted > deadline:
                    raise BudgetExhausted(predicted - now)
                if deadline <= now:
                    raise BudgetExhausted(max(predicted - now, _BUSY_RETRY_AFTER))
            await _wait_place(st, loop, deadline, predicted - now)
            now = loop.time()
            waited = True
        else:
            st.active += 1
        self._st = st

        try:
            slot = _rate_slot(st, n, interval, now)
            if deadline is not None and slot > deadline:
                raise BudgetExhausted(slot - now)
            t = st.times
            t.append(slot)
            # Trim: keep every reservation not yet due, and of the others the last N (+ slack) that
            # are less than an interval old (older ones no longer constrain any slot).
            keep = n + _LOG_SLACK
            while t[0] <= now and (len(t) > keep or t[0] + interval <= now):
                t.popleft()
            if slot > now:
                slot = await _sleep_until(st, loop, slot)
                waited = True
        except BaseException:
            self._st = None
            st.active -= 1
            _wake(st)
            raise
        return Permit(loop.time() - start if waited else 0.0, slot)

    async def __aexit__(self, exc_type, exc, tb) -> None:
        st = self._st
        if st is not None:
            self._st = None
            st.active -= 1
            if st.waiters:
                _wake(st)


def _wake(st: _Key) -> None:
    """Hands free concurrency places to waiters, oldest first."""
    waiters = st.waiters
    while waiters and (st.cap == 0 or st.active < st.cap):
        fut = waiters.popleft()
        if not fut.done():
            st.active += 1  # the place is handed over now: nobody can overtake the woken waiter
            fut.set_result(None)


async def _wait_place(st: _Key, loop: asyncio.AbstractEventLoop, deadline: float | None, rate_wait: float) -> None:
    fut: asyncio.Future[None] = loop.create_future()
    st.waiters.append(fut)
    try:
        if deadline is None:
            await fut
        else:
            async with asyncio.timeout_at(deadline):
                await fut
    except BaseException as exc:
        if fut.done() and not fut.cancelled():
            st.active -= 1  # granted just as we gave up: pass it on
            _wake(st)
        else:
            fut.cancel()
            try:
                st.waiters.remove(fut)
            except ValueError:
                pass
        if isinstance(exc, TimeoutError):
            raise BudgetExhausted(max(rate_wait, _BUSY_RETRY_AFTER)) from None
        raise


async def _sleep_until(st: _Key, loop: asyncio.AbstractEventLoop, slot: float) -> float:
    """Sleeps until the reserved `slot`, following the shifts made meanwhile (pauses, late starts);
    returns the reservation as it stands in the log then.

    A caller woken late (the event loop was busy) moves its own and every later reservation by its
    lateness: otherwise the next batch, woken on time, could start less than an interval after it."""
    st.sleepers += 1
    gen = st.pause_base + len(st.pauses)
    try:
        while True:
            await asyncio.sleep(slot - loop.time())
            end = st.pause_base + len(st.pauses)
            if end != gen:
                for tp, by, inclusive in st.pauses[gen - st.pause_base :]:
                    if slot > tp or (inclusive and slot == tp):
                        slot += by
                gen = end
            now = loop.time()
            if slot <= now:
                if now - slot > _LATE_TOLERANCE:
                    _shift(st, slot, now - slot, inclusive=True)
                    return now
                return slot
    except asyncio.CancelledError:
        _give_back(st, slot, loop.time())
        raise
    finally:
        st.sleepers -= 1
        if st.sleepers == 0 and st.pauses:
            st.pause_base += len(st.pauses)
            st.pauses.clear()


def _shift(st: _Key, tp: float, by: float, inclusive: bool) -> None:
    """Moves every reservation after `tp` (and at it, if inclusive) later by `by`; order is kept."""
    st.times = deque(x + by if x > tp or (inclusive and x == tp) else x for x in st.times)
    if st.sleepers:
        st.pauses.append((tp, by, inclusive))


def _give_back(st: _Key, slot: float, now: float) -> None:
    """Removes a reservation nobody will use, if the log stays exact for later slots."""
    t = st.times
    if not t or slot <= now or slot < t[0]:
        return
    # Exact when what remains is still a suffix of every reservation made, long enough for the
    # N-th-most-recent rule (or when everything older is too old to matter).
    n_needed = len(t) - 1  # entries left after the removal
    if n_needed >= st.n or t[0] + st.interval <= now:
        try:
            t.remove(slot)
        except ValueError:
            pass


class InProcessPacer:
    """The pacer of one process: per-key sliding logs and FIFO concurrency queues in memory."""

    def __init__(self, sweep_interval: float = 60.0, *, margin: float = 0.0):
        self._margin = _check_margin(margin)
        self._keys: dict[str, _Key] = {}
        self._sweep_interval = sweep_interval
        self._next_sweep = 0.0

    def slot(self, key: str, budget: Budget, timeout: float | None) -> AbstractAsyncContextManager[Permit]:
        return _LocalSlot(self, key, budget, timeout)

    async def pause(self, key: str, seconds: float) -> None:
        if not seconds > 0:
            return
        now = asyncio.get_running_loop().time()
        st = self._keys.get(key)
        if st is None:
            st = self._keys[key] = _Key()
        until = now + seconds
        if until <= st.paused_until:
            return
        st.paused_until = until
        t = st.times
        if t and t[-1] > now:
            first = next(x for x in t if x > now)
            if until > first:
                _shift(st, now, until - first, inclusive=False)

    async def started(self, key: str, budget: Budget, permit: Permit) -> None:
        st = self._keys.get(key)
        if st is None or permit.reserved is None:
            return
        late = asyncio.get_running_loop().time() - permit.reserved
        if late > _LATE_TOLERANCE:
            _shift(st, permit.reserved, late, inclusive=True)

    def _sweep(self, now: float) -> None:
        """Drops the state of keys that no longer matter (nothing pending, log older than interval)."""
        self._next_sweep = now + self._sweep_interval
        idle = [
            key
            for key, st in self._keys.items()
            if not st.active
            and not st.waiters
            and not st.sleepers
            and st.paused_until <= now
            and (not st.times or st.times[-1] + st.interval <= now)
        ]
        for key in idle:
            del self._keys[key]

    async def aclose(self) -> None:
        self._keys.clear()


# ------------------------------------------------------------------------------------------------
# Redis (shared by several processes)
# ------------------------------------------------------------------------------------------------

# All times in the scripts are integer microseconds on Redis's own clock (TIME), so process clocks
# never matter; callers only ever receive durations. Keys of one credential (hash-tagged together):
#   headwater:pacer:{<key>}:r  sorted set of rate reservations (member = token, score = slot)
#   headwater:pacer:{<key>}:p  paused-until
#   headwater:pacer:{<key>}:c  sorted set of concurrency holders (member = token, score = lease end)
# The scripts and commands of one process go to Redis in pipelines (RedisPacer._send): what its
# callers ask for during one pass of the event loop shares one round trip, in call order.

# KEYS: rate, pause, holders. ARGV: n, interval_us, cap, timeout_us (-1 = none), token, lease_us, slack.
# Returns {1, wait_us}: reserved (and a place taken if cap > 0), start in wait_us;
#         {0, retry_us}: the turn would come after the deadline, nothing reserved;
#         {2, rate_wait_us}: no concurrency place free now, nothing reserved (poll again).
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local timeout = tonumber(ARGV[4])

local slot = now
local paused = redis.call('GET', KEYS[2])
if paused then
  paused = tonumber(paused)
  if paused > slot then slot = paused end
end
local card = redis.call('ZCARD', KEYS[1])
if card > 0 then
  local last = tonumber(redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2])
  if last > slot then slot = last end
  if card >= n then
    local nth = tonumber(redis.call('ZRANGE', KEYS[1], -n, -n, 'WITHSCORES')[2]) + interval
    if nth > slot then slot = nth end
  end
  if slot > now then
    -- a turn to wait for: spaced from the one before
    local spaced = last + math.floor(interval / n)
    if spaced > slot then slot = spaced end
  end
end
if timeout >= 0 and slot > now + timeout then
  return {0, slot - now}
end

if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= cap then
    return {2, slot - now}
  end
  local lease = tonumber(ARGV[6])
  redis.call('ZADD', KEYS[3], now + lease, ARGV[5])
  local ttl = math.ceil(lease / 1000) + 1000
  if redis.call('PTTL', KEYS[3]) < ttl then redis.call('PEXPIRE', KEYS[3], ttl) end
end

redis.call('ZADD', KEYS[1], slot, ARGV[5])
card = card + 1 - redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - interval)
local crowded = 0
if card >= n then crowded = 1 end
local excess = card - n - tonumber(ARGV[7])
if excess > 0 then
  -- keep N (+ slack) reservations, and every one not yet due
  local past = redis.call('ZCOUNT', KEYS[1], '-inf', now)
  if past < excess then excess = past end
  if excess > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1) end
end
redis.call('PEXPIRE', KEYS[1], math.ceil((slot - now + interval) / 1000) + 1000)
return {1, slot - now, crowded}
"""

# KEYS: rate. ARGV: token, late_tolerance_us, n. Returns how long (us) until the caller's
# reservation is due (a pause may have moved it), or 0: due, start now, or -1: due, and the log has
# room (below). A caller that comes later than the tolerance (its process was busy) moves its own
# and every later reservation by its lateness, so the callers behind it cannot crowd the window it
# now starts in. Not needed (and skipped: it costs a step per reservation) while the log holds
# fewer than n reservations: the log holds every one of the last interval and the future, so no
# window can reach n, however late anyone starts.
_CONFIRM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s then return 0 end
s = tonumber(s)
if s > now then return s - now end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then return -1 end
local late = now - s
if late > tonumber(ARGV[2]) then
  local later = redis.call('ZRANGEBYSCORE', KEYS[1], string.format('%d', s), '+inf', 'WITHSCORES')
  for i = 1, #later, 2 do
    redis.call('ZADD', KEYS[1], tonumber(later[i + 1]) + late, later[i])
  end
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl > 0 then redis.call('PEXPIRE', KEYS[1], pttl + math.ceil(late / 1000)) end
end
return 0
"""

# KEYS: rate. ARGV: n, interval_us, token. Removes a reservation that is not yet due if the log
# stays exact for later slots. Returns 1 if given back.
_GIVE_BACK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local s = redis.call('ZSCORE', KEYS[1], ARGV[3])
if not s or tonumber(s) <= now then return 0 end
local card = redis.call('ZCARD', KEYS[1])
local first = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
if card - 1 >= tonumber(ARGV[1]) or first + tonumber(ARGV[2]) <= now then
  redis.call('ZREM', KEYS[1], ARGV[3])
  return 1
end
return 0
"""

# KEYS: rate, pause. ARGV: seconds_us. Pauses the key and shifts pending reservations (all by the
# same amount) so that the first lands on the end of the pause. Returns the pause end - now (us).
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local untilv = now + tonumber(ARGV[1])
local old = redis.call('GET', KEYS[2])
if old and tonumber(old) >= untilv then return tonumber(old) - now end
redis.call('SET', KEYS[2], untilv, 'PX', math.ceil((untilv - now) / 1000) + 1000)
local pending = redis.call('ZRANGEBYSCORE', KEYS[1], string.format('(%d', now), '+inf', 'WITHSCORES')
if #pending > 0 then
  local shift = untilv - tonumber(pending[2])
  if shift > 0 then
    for i = 1, #pending, 2 do
      redis.call('ZADD', KEYS[1], tonumber(pending[i + 1]) + shift, pending[i])
    end
    local pttl = redis.call('PTTL', KEYS[1])
    if pttl > 0 then redis.call('PEXPIRE', KEYS[1], pttl + math.ceil(shift / 1000)) end
  end
end
return untilv - now
"""

_PREFIX = "headwater:pacer:"
# Lateness (round trips included) beyond which a waiter shifts the reservations behind it.
_REDIS_LATE_TOLERANCE_US = 5_000
# Slow confirmations after which a caller that is due starts anyway (each one shifted the later callers).
_MAX_SLOW_CONFIRMS = 3
_US = 1_000_000
# Lease of a concurrency place beyond the caller's deadline (a crashed process frees it then).
_LEASE_MARGIN = 10.0
# Lease when the caller has no deadline.
_LEASE_NO_DEADLINE = 300.0
# Connections to Redis per process.
_POOL_SIZE = 50
# Polling for a concurrency place: jittered sleeps, shorter when a local holder lets go.
_POLL_MIN = 0.005
_POLL_MAX = 0.025


class _Waiter:
    __slots__ = ("fut",)

    def __init__(self, fut: asyncio.Future[None]):
        self.fut = fut


class _RedisSlot:
    __slots__ = ("_pacer", "_key", "_budget", "_timeout", "_keys", "_token", "_holding")

    def __init__(self, pacer: RedisPacer, key: str, budget: Budget, timeout: float | None):
        self._pacer = pacer
        self._key = key
        self._budget = budget
        self._timeout = timeout
        self._holding = False

    async def __aenter__(self) -> Permit:
        pacer = self._pacer
        budget = self._budget
        loop = asyncio.get_running_loop()
        start = loop.time()
        timeout = self._timeout
        deadline = None if timeout is None else start + (timeout if timeout > 0 else 0.0)
        base = f"{_PREFIX}{{{self._key}}}:"
        keys = self._keys = (base + "r", base + "p", base + "c")
        token = self._token = f"{pacer._id}{next(pacer._counter)}"
        cap = budget.max_concurrent
        lease = (_LEASE_NO_DEADLINE if timeout is None else max(timeout, 0.0)) + _LEASE_MARGIN
        args = [budget.allowed_requests, _us(budget.interval + pacer._margin), cap, -1, token, _us(lease), _LOG_SLACK]

        try:
            if cap:
                code, us, crowded, sent = await self._acquire_place(loop, keys, args, deadline)
            else:
                if deadline is not None:
                    args[3] = max(0, int((deadline - loop.time()) * _US))
                sent = loop.time()
                code, us, *crowded = await pacer._run(pacer._acquire, keys, args)
        except (asyncio.CancelledError, PacerUnavailable) as exc:
            # The script may have run without us learning the answer: undo what it may have taken.
            if isinstance(exc, PacerUnavailable) and not isinstance(exc.__cause__, pacer._timeouts):
                raise
            if cap:
                pacer._background(pacer._release(keys[2], token))
            pacer._background(pacer._run(pacer._give_back, keys[:1], [args[0], args[1], token]))
            raise
        if code == 0:
            raise BudgetExhausted(us / _US)
        self._holding = bool(cap)
        # Due at once: start now if the answer came back quickly, or if the log had room (fewer
        # than n reservations, so no window can fill up however late this caller starts).
        if us <= 0 and (crowded == [0] or (loop.time() - sent) * _US <= _REDIS_LATE_TOLERANCE_US):
            return Permit(0.0, token=token)
        try:
            # A slow answer means a start later than reserved: confirming shifts the later
            # reservations by that lateness, as for a waiter woken late. Callers that waited
            # confirm too (a pause may have moved the slot). A confirmation that itself comes back
            # slowly (a burst of callers released together: each resumes when the event loop gets
            # to it) is lateness Redis has not seen yet: confirm again, so that it shifts.
            confirm = [token, _REDIS_LATE_TOLERANCE_US, args[0]]
            slow = 0
            while True:
                if us > 0:
                    await asyncio.sleep(us / _US)
                sent = loop.time()
                us = await pacer._run(pacer._confirm, keys[:1], confirm)
                if us <= 0:
                    quick = (loop.time() - sent) * _US <= _REDIS_LATE_TOLERANCE_US
                    if us < 0 or quick or slow == _MAX_SLOW_CONFIRMS:
                        break
                    slow += 1
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                pacer._background(pacer._run(pacer._give_back, keys[:1], [args[0], args[1], token]))
            self._release()
            raise
        return Permit(loop.time() - start, token=token)

    async def _acquire_place(self, loop, keys, args, deadline: float | None) -> tuple[int, int, list, float]:
        """Reserves rate and a concurrency place in one script; polls while no place is free.
        Returns the script's answer (code, us, [crowded]) and when the answering call was sent.

        Callers of this process line up in FIFO order and only the first of them polls, so they
        never overtake each other; across processes the order is approximately FCFS."""
        pacer = self._pacer
        key = self._key
        waiting = pacer._waiting.get(key)
        me: _Waiter | None = None
        try:
            if waiting:  # others of this process are already waiting for a place: line up
                me = _Waiter(loop.create_future())
                waiting.append(me)
                if not await _wait(me.fut, deadline):
                    raise BudgetExhausted(_BUSY_RETRY_AFTER)
            while True:
                if me is not None:
                    me.fut = loop.create_future()  # a local release during the round trip is kept
                if deadline is not None:
                    args[3] = max(0, int((deadline - loop.time()) * _US))
                sent = loop.time()
                code, us, *crowded = await pacer._run(pacer._acquire, keys, args)
                if code != 2:
                    return code, us, crowded, sent
                if deadline is not None and loop.time() >= deadline:
                    raise BudgetExhausted(max(us / _US, _BUSY_RETRY_AFTER))
                if me is None:
                    waiting = pacer._waiting.get(key)
                    if waiting is None:
                        waiting = pacer._waiting[key] = deque()
                    me = _Waiter(loop.create_future())
                    waiting.append(me)
                    if waiting[0] is not me:
                        if not await _wait(me.fut, deadline):
                            raise BudgetExhausted(max(us / _US, _BUSY_RETRY_AFTER))
                        continue
                # First in line: poll after a short jittered sleep, at once if a local holder lets go.
                if not me.fut.done():
                    delay = random.uniform(_POLL_MIN, _POLL_MAX)
                    if deadline is not None:
                        delay = min(delay, max(deadline - loop.time(), 0.0))
                    try:
                        async with asyncio.timeout(delay):
                            await me.fut
                    except TimeoutError:
                        pass
        finally:
            if me is not None:
                waiting = pacer._waiting.get(key)
                if waiting is not None:
                    first = waiting[0] is me
                    try:
                        waiting.remove(me)
                    except ValueError:
                        pass
                    if not waiting:
                        del pacer._waiting[key]
                    elif first:
                        _kick(waiting[0])

    def _release(self) -> None:
        if self._holding:
            self._holding = False
            pacer = self._pacer
            pacer._background(pacer._release(self._keys[2], self._token))
            waiting = pacer._waiting.get(self._key)
            if waiting:
                _kick(waiting[0])

    async def __aexit__(self, exc_type, exc, tb) -> None:
        if self._holding:
            self._holding = False
            pacer = self._pacer
            await pacer._release(self._keys[2], self._token)
            waiting = pacer._waiting.get(self._key)
            if waiting:
                _kick(waiting[0])


def _us(seconds: float) -> int:
    return max(1, int(seconds * _US + 0.999999))


def _kick(w: _Waiter) -> None:
    if not w.fut.done():
        w.fut.set_result(None)


async def _wait(fut: asyncio.Future[None], deadline: float | None) -> bool:
    """Waits for `fut` until the deadline; False if the deadline came first."""
    if deadline is None:
        await fut
        return True
    try:
        async with asyncio.timeout_at(deadline):
            await fut
    except TimeoutError:
        return fut.done() and not fut.cancelled()
    return True


class RedisPacer:
    """The pacer shared through Redis: atomic Lua scripts on Redis's clock; PacerUnavailable when
    Redis cannot be reached (a request is never sent unpaced)."""

    def __init__(self, url: str, *, margin: float = 0.0, socket_timeout: float = 0.5, connect_timeout: float = 0.5):
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import RedisError
        from redis.exceptions import TimeoutError as RedisTimeout

        self._margin = _check_margin(margin)
        self._errors = (RedisError, OSError)
        self._timeouts = (RedisTimeout, TimeoutError)
        # A blocking pool: callers beyond `_POOL_SIZE` at once wait for a connection (a round trip
        # is ~0.1 ms) rather than fail; redis-py's default pool raises "Too many connections" past
        # 100, which turned a burst of callers into 503s.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=_POOL_SIZE,
            timeout=None,  # the caller's deadline bounds the wait
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            retry_on_timeout=False,
            retry=Retry(NoBackoff(), 1),  # one immediate retry on a stale pooled connection
        )
        self._redis = aioredis.Redis.from_pool(pool)  # closing the client closes the pool
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._confirm = self._redis.register_script(_CONFIRM)
        self._give_back = self._redis.register_script(_GIVE_BACK)
        self._pause = self._redis.register_script(_PAUSE)
        self._id = f"{uuid.uuid4().hex[:10]}:{os.getpid()}:"
        self._counter = itertools.count()
        self._waiting: dict[str, deque[_Waiter]] = {}  # local FIFO of callers waiting for a place
        self._tasks: set[asyncio.Task] = set()
        self._batch: list[tuple] = []  # (script or None, command, answer) for the next pipeline (_send)

    def slot(self, key: str, budget: Budget, timeout: float | None) -> AbstractAsyncContextManager[Permit]:
        return _RedisSlot(self, key, budget, timeout)

    async def pause(self, key: str, seconds: float) -> None:
        if not seconds > 0:
            return
        base = f"{_PREFIX}{{{key}}}:"
        await self._run(self._pause, (base + "r", base + "p"), [_us(seconds)])

    async def started(self, key: str, budget: Budget, permit: Permit) -> None:
        if permit.token is not None:
            rate = f"{_PREFIX}{{{key}}}:r"
            await self._run(self._confirm, (rate,), [permit.token, _REDIS_LATE_TOLERANCE_US, budget.allowed_requests])

    async def aclose(self) -> None:
        if self._batch:
            self._send_batch()  # scripts asked for in this very pass of the loop
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._redis.aclose()

    def _run(self, script, keys, args) -> asyncio.Future:
        """Runs `script` in Redis; the answer, or PacerUnavailable if Redis cannot be reached."""
        return self._send(("EVALSHA", script.sha, len(keys), *keys, *args), script)

    def _send(self, command: tuple, script=None) -> asyncio.Future:
        """Sends a Redis command (of `script`, for EVALSHA); its answer, or PacerUnavailable.

        Auto-pipelining: the commands asked for during one pass of the event loop go to Redis
        together, in call order, as one pipeline (one connection, one write, one read), rather
        than one round trip each; each script still runs atomically. Under load this is most of
        the shared pacer's cost per request (BENCHMARKS.md)."""
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        self._batch.append((script, command, answer))
        if len(self._batch) == 1:
            loop.call_soon(self._send_batch)
        return answer

    def _send_batch(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return  # sent already (by aclose)
        task = asyncio.get_running_loop().create_task(self._pipeline(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pipeline(self, batch: list) -> None:
        from redis.exceptions import NoScriptError

        try:
            for attempt in range(2):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for _, command, _ in batch:
                        pipe.execute_command(*command)
                    results = await pipe.execute(raise_on_error=False)
                unknown = [item for item, result in zip(batch, results) if isinstance(result, NoScriptError)]
                for (*_, answer), result in zip(batch, results):
                    if answer.done() or isinstance(result, NoScriptError):
                        continue
                    if isinstance(result, Exception):
                        answer.set_exception(PacerUnavailable(f"the shared pacer (Redis) failed: {result}"))
                    else:
                        answer.set_result(result)
                if not unknown or attempt:
                    break
                # Redis lost its script cache (a restart, SCRIPT FLUSH): load them again and run
                # what did not run (a script that is not loaded ran nothing, so this is safe).
                for script in {item[0] for item in unknown}:
                    await self._redis.script_load(script.script)
                batch = unknown
            for *_, answer in batch:
                if not answer.done():
                    answer.set_exception(PacerUnavailable("the shared pacer (Redis) does not know its scripts"))
        except self._errors as exc:
            unavailable = PacerUnavailable(f"the shared pacer (Redis) is unavailable: {exc}")
            unavailable.__cause__ = exc
            for *_, answer in batch:
                if not answer.done():
                    answer.set_exception(unavailable)
        except BaseException:
            for *_, answer in batch:
                if not answer.done():
                    answer.cancel()
            raise

    async def _release(self, holders: str, token: str) -> None:
        """Frees a concurrency place; if Redis fails now, the lease frees it later."""
        try:
            await self._send(("ZREM", holders, token))
        except PacerUnavailable as exc:
            log.warning("pacer: could not free a concurrency place (its lease will): %s", exc)

    def _background(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(_quiet(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _quiet(coro) -> None:
    try:
        await coro
    except PacerUnavailable as exc:
        log.warning("pacer: %s", exc)
