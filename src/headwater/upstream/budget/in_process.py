"""The pacer of one process (see the package docstring for how a turn is worked out)."""

from __future__ import annotations

import asyncio
from collections import deque
from contextlib import AbstractAsyncContextManager

from headwater.upstream.budget._types import (
    _BUSY_RETRY_AFTER,
    _LATE_TOLERANCE,
    _LOG_SLACK,
    Budget,
    BudgetExhausted,
    Permit,
    _check_margin,
)

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


