"""The pacer of one process (see the package docstring for how a turn is worked out)."""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from collections import deque
from contextlib import AbstractAsyncContextManager

from headwater.upstream.budget._types import (
    _BUSY_RETRY_AFTER,
    _LATE_TOLERANCE,
    _LOG_SLACK,
    BUCKETS,
    Budget,
    BudgetExhausted,
    BudgetState,
    Permit,
    WindowState,
    WindowUse,
    _check_margin,
)


class _Plan:
    """A budget's windows as the pacer uses them (intervals with the margin added), worked out once
    per budget: which are followed by the exact log and which by bucket counts."""

    __slots__ = ("windows", "logged", "counted", "keep", "trim_at", "log_span", "span", "spacing")

    def __init__(self, budget: Budget, margin: float):
        # (n, interval with the margin, counted, the interval as the budget gives it)
        self.windows = tuple((w.allowed_requests, w.interval + margin, w.counted, w.interval) for w in budget.windows)
        self.logged = tuple((n, t) for n, t, counted, _ in self.windows if not counted)
        self.counted = tuple((n, t) for n, t, counted, _ in self.windows if counted)
        # The log keeps, of the past, the last `keep` reservations less than `log_span` old.
        self.keep = max((n for n, _ in self.logged), default=0) + _LOG_SLACK
        # with counted windows, starts leave the log for the buckets 16 at a time (fewer steps)
        self.trim_at = self.keep + (16 if self.counted else 0)
        # (with no exactly logged window, up to a second: a late start still shifts its reservation)
        self.log_span = max((t for _, t in self.logged), default=1.0)
        self.span = max(t for _, t, _, _ in self.windows)
        self.spacing = min(t / n for n, t, _, _ in self.windows)


class _Counts:
    """The starts of a counted window that left the log: buckets [first, last, count] of start
    times, oldest first, each spanning less than interval / BUCKETS. A bucket is counted until its
    last start leaves the window, so a start is counted at most interval / BUCKETS too long, never
    too short; at most BUCKETS + 2 buckets are held, however many requests the window allows."""

    __slots__ = ("buckets", "total", "width")

    def __init__(self, interval: float):
        self.buckets: deque[list] = deque()
        self.total = 0
        self.width = interval / BUCKETS

    def add(self, x: float) -> None:
        b = self.buckets
        if b and x < b[-1][0] + self.width:
            last = b[-1]
            if x > last[1]:
                last[1] = x
            last[2] += 1
        else:
            b.append([x, x, 1])
        self.total += 1

    def expire(self, interval: float, now: float) -> None:
        b = self.buckets
        while b and b[0][1] + interval <= now:
            self.total -= b.popleft()[2]


class _Key:
    """Pacing state of one key in one process."""

    __slots__ = (
        "times", "counts", "paused_until", "pause_reason", "active", "cap", "waiters", "n", "interval", "span",
        "sleepers", "pauses", "pause_base", "budget", "plan",
    )

    def __init__(self) -> None:
        self.times: deque[float] = deque()  # reserved start times, ascending (the log)
        self.counts: dict[float, _Counts] = {}  # interval -> the starts of a counted window that left the log
        self.paused_until = 0.0
        self.pause_reason = ""
        self.active = 0  # concurrency places held (in flight, or holding one while sleeping for the rate)
        self.cap = 0  # latest max_concurrent seen
        self.waiters: deque[asyncio.Future[None]] = deque()  # FIFO of callers waiting for a place
        # Of the latest budget seen: the largest exactly logged window's n and interval (what the
        # log must hold for a give-back to stay exact) and the longest interval of all.
        self.n = 0
        self.interval = 0.0
        self.span = 0.0
        self.sleepers = 0  # callers sleeping until their reserved slot
        # Shifts of pending reservations made while someone sleeps: (from, by, inclusive) moves every
        # slot > from (>= from if inclusive) later by `by`.
        self.pauses: list[tuple[float, float, bool]] = []
        self.pause_base = 0  # number of pauses dropped from the front of `pauses`
        self.budget: Budget | None = None  # the latest budget seen, and its plan
        self.plan: _Plan | None = None


def _counted_earliest(st: _Key, n: int, interval: float, now: float) -> float:
    """The earliest time a counted window has room for one more start (<= now: it has room now)."""
    c = st.counts.get(interval)
    if c is None:
        c = st.counts[interval] = _Counts(interval)
    t = st.times
    if c.total + len(t) < n:  # room, however many of them are still in the window
        return now
    c.expire(interval, now)
    first = bisect_right(t, now - interval) if t and t[0] <= now - interval else 0
    need = c.total + len(t) - first - n + 1  # starts that must leave the window first
    if need <= 0:
        return now
    for _, last, count in c.buckets:
        if count >= need:
            return last + interval
        need -= count
    return t[first + need - 1] + interval


def _rate_slot(st: _Key, plan: _Plan, now: float) -> float:
    """The earliest slot every window allows (and the pause, and the order of reservations)."""
    slot = now
    if st.paused_until > slot:
        slot = st.paused_until
    t = st.times
    spacing = 0.0
    if t:
        if t[-1] > slot:
            slot = t[-1]
        size = len(t)
        for n, interval in plan.logged:
            if size >= n:
                nth = t[-n] + interval
                if nth > now:
                    if nth > slot:
                        slot = nth
                    if interval / n > spacing:
                        spacing = interval / n
    for n, interval in plan.counted:
        earliest = _counted_earliest(st, n, interval, now)
        if earliest > now:
            if earliest > slot:
                slot = earliest
            if interval / n > spacing:
                spacing = interval / n
    if t and slot > now:  # a turn to wait for: spaced from the one before (by the full windows' spacing)
        spaced = t[-1] + (spacing or plan.spacing)
        if spaced > slot:
            slot = spaced
    return slot


def _trim(st: _Key, plan: _Plan, now: float) -> None:
    """Keeps every reservation not yet due, and of the others the last `keep` that are less than
    `log_span` old (older ones no longer constrain any slot of an exactly logged window); those
    that leave the log are counted in the buckets of the counted windows."""
    t = st.times
    keep = plan.keep
    span = plan.log_span
    counted = plan.counted
    gone = []
    while t and t[0] <= now and (len(t) > keep or t[0] + span <= now):
        gone.append(t.popleft())
    for _, interval in counted:
        c = st.counts.get(interval)
        if c is None:
            c = st.counts[interval] = _Counts(interval)
        for x in gone:
            c.add(x)
        c.expire(interval, now)


def _window_states(st: _Key, plan: _Plan, slot: float) -> tuple[WindowState, ...]:
    """Each window as the reservation at `slot` (the last of the log) finds it."""
    t = st.times
    out = []
    for n, interval, counted, given in plan.windows:
        first = bisect_right(t, slot - interval) if t[0] <= slot - interval else 0  # (t[0] is in it: 0)
        used = len(t) - first
        oldest = t[first]
        if counted:
            c = st.counts[interval]
            c.expire(interval, slot)
            used += c.total
            if c.buckets:
                oldest = c.buckets[0][1]
        remaining = n - used
        if remaining < 0:
            remaining = 0
        out.append(WindowState(n, given, remaining, max(0.0, oldest + interval - slot)))
    return tuple(out)


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
        plan = st.plan
        if plan is None or st.budget is not budget:
            plan = st.plan = pacer._plan(budget)
            st.budget = budget
            st.n = plan.keep - _LOG_SLACK
            st.interval = plan.log_span
            st.span = plan.span
        timeout = self._timeout
        deadline = None if timeout is None else now + (timeout if timeout > 0 else 0.0)
        cap = budget.max_concurrent
        if cap != st.cap:
            st.cap = cap
            _wake(st)
        waited = False

        # Concurrency first (FIFO): a place is held while sleeping for the rate slot.
        if cap and (st.active >= cap or st.waiters):
            predicted = _rate_slot(st, plan, now)
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
            slot = _rate_slot(st, plan, now)
            if deadline is not None and slot > deadline:
                raise BudgetExhausted(slot - now)
            t = st.times
            t.append(slot)
            if t[0] <= now and (len(t) > plan.trim_at or t[0] + plan.log_span <= now):
                _trim(st, plan, now)
            windows = _window_states(st, plan, slot)
            if slot > now:
                slot = await _sleep_until(st, loop, slot)
                waited = True
        except BaseException:
            self._st = None
            st.active -= 1
            _wake(st)
            raise
        return Permit(loop.time() - start if waited else 0.0, slot, windows=windows)

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
        self._plans: dict[Budget, _Plan] = {}

    def _plan(self, budget: Budget) -> _Plan:
        plan = self._plans.get(budget)
        if plan is None:
            if len(self._plans) > 10_000:
                self._plans.clear()
            plan = self._plans[budget] = _Plan(budget, self._margin)
        return plan

    def slot(self, key: str, budget: Budget, timeout: float | None) -> AbstractAsyncContextManager[Permit]:
        return _LocalSlot(self, key, budget, timeout)

    async def pause(self, key: str, seconds: float, reason: str = "") -> None:
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
        st.pause_reason = reason
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

    async def state(self, key: str, budget: Budget) -> BudgetState:
        now = asyncio.get_running_loop().time()
        plan = self._plan(budget)
        st = self._keys.get(key)
        if st is None:
            st = _Key()
        t = st.times
        due = bisect_right(t, now)  # reservations [due:] are not yet due: their callers wait
        pending = len(t) - due
        windows = []
        for n, interval, counted, given in plan.windows:
            first = bisect_right(t, now - interval, 0, due)
            used = due - first
            oldest = t[first] if used else None
            if counted and interval in st.counts:
                c = st.counts[interval]
                c.expire(interval, now)
                used += c.total
                if c.buckets:
                    oldest = c.buckets[0][1]
            reset = 0.0 if oldest is None else max(0.0, oldest + interval - now)
            windows.append(WindowUse(n, given, used, max(0, n - used - pending), reset))
        paused = st.paused_until - now
        return BudgetState(
            tuple(windows),
            waiting=pending + len(st.waiters),
            in_flight=st.active if st.cap else 0,
            paused_for=paused if paused > 0 else 0.0,
            pause_reason=st.pause_reason if paused > 0 else "",
        )

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
            and (not st.times or st.times[-1] + st.span <= now)
        ]
        for key in idle:
            del self._keys[key]

    async def aclose(self) -> None:
        self._keys.clear()


