"""The pacer shared through Redis (see the package docstring for how a turn is worked out).

All times in the scripts are integer microseconds on Redis's own clock (TIME), so process clocks
never matter; callers only ever receive durations. Keys of one credential (hash-tagged together):
  headwater:pacer:{<key>}:r  sorted set of rate reservations (member = token, score = slot)
  headwater:pacer:{<key>}:p  paused-until
  headwater:pacer:{<key>}:c  sorted set of concurrency holders (member = token, score = lease end)
  headwater:pacer:{<key>}:pr the pause's reason
  headwater:pacer:{<key>}:b<interval_us>  a counted window's buckets (a hash, see _buckets.lua)
The scripts and commands of one process go to Redis in pipelines (RedisPacer._send): what its
callers ask for during one pass of the event loop shares one round trip, in call order."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import uuid
from collections import deque
from contextlib import AbstractAsyncContextManager
from importlib import resources

from headwater.upstream.budget._types import (
    _BUSY_RETRY_AFTER,
    _LOG_SLACK,
    BUCKETS,
    Budget,
    BudgetExhausted,
    BudgetState,
    PacerUnavailable,
    Permit,
    WindowState,
    WindowUse,
    _check_margin,
)

log = logging.getLogger(__name__)


def _script(name: str) -> str:
    """A Lua script of this package (a .lua file beside this module)."""
    return resources.files(__package__).joinpath(name).read_text()


# acquire.lua. KEYS: rate, pause, holders, one bucket hash per counted window. ARGV: see the script.
# Returns {1, wait_us, crowded, then per window: remaining, reset_us}: reserved in every window
#         (and a place taken if cap > 0), start in wait_us;
#         {0, retry_us}: the turn would come after the deadline, nothing reserved;
#         {2, rate_wait_us}: no concurrency place free now, nothing reserved (poll again).
_ACQUIRE = _script("_buckets.lua") + _script("acquire.lua")

# KEYS: rate. ARGV: token, late_tolerance_us, n. Returns how long (us) until the caller's
# reservation is due (a pause may have moved it), or 0: due, start now, or -1: due, and the log has
# room (below). A caller that comes later than the tolerance (its process was busy) moves its own
# and every later reservation by its lateness, so the callers behind it cannot crowd the window it
# now starts in. Not needed (and skipped: it costs a step per reservation) while the log holds
# fewer than n reservations: the log holds every one of the last interval and the future, so no
# window can reach n, however late anyone starts.
_CONFIRM = _script("confirm.lua")

# KEYS: rate. ARGV: n, interval_us, token. Removes a reservation that is not yet due if the log
# stays exact for later slots. Returns 1 if given back.
_GIVE_BACK = _script("give_back.lua")

# KEYS: rate, pause, pause reason. ARGV: seconds_us, reason. Pauses the key and shifts pending
# reservations (all by the same amount) so that the first lands on the end of the pause. Returns
# the pause end - now (us).
_PAUSE = _script("pause.lua")

# state.lua: each window's use, the callers waiting and the pause (reads only).
_STATE = _script("_buckets.lua") + _script("state.lua")

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


class _Plan:
    """A budget as the scripts take it, worked out once per budget (intervals with the margin)."""

    __slots__ = ("limits", "args", "bucket_keys", "give_back_n", "log_span_us", "confirm_n")

    def __init__(self, budget: Budget, margin: float):
        windows = [(w.allowed_requests, _us(w.interval + margin), w.counted) for w in budget.windows]
        logged = [(n, t) for n, t, counted in windows if not counted]
        self.limits = [(w.allowed_requests, w.interval) for w in budget.windows]
        keep = max((n for n, _ in logged), default=0) + _LOG_SLACK
        # (with no exactly logged window, up to a second: a late start still shifts its reservation)
        self.log_span_us = max((t for _, t in logged), default=_US)
        span = max(t for _, t, _ in windows)
        self.args = [keep, self.log_span_us, span, BUCKETS, len(windows)]
        for n, t, counted in windows:
            self.args += [n, t, 1 if counted else 0]
        self.bucket_keys = [f"b{t}" for _, t, counted in windows if counted]
        # give_back.lua: what the log must still hold for a give-back to be exact.
        self.give_back_n = keep - _LOG_SLACK
        # confirm.lua skips the late shift while the log holds fewer than this; never with a
        # counted window (its starts are not all in the log).
        self.confirm_n = 0 if self.bucket_keys else min(n for n, _ in logged)


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
        plan = pacer._plan(budget)
        base = f"{_PREFIX}{{{self._key}}}:"
        keys = self._keys = (base + "r", base + "p", base + "c", *(base + suffix for suffix in plan.bucket_keys))
        token = self._token = f"{pacer._id}{next(pacer._counter)}"
        cap = budget.max_concurrent
        lease = (_LEASE_NO_DEADLINE if timeout is None else max(timeout, 0.0)) + _LEASE_MARGIN
        args = [cap, -1, token, _us(lease), *plan.args]
        give_back = [plan.give_back_n, plan.log_span_us, token]

        try:
            if cap:
                code, us, rest, sent = await self._acquire_place(loop, keys, args, deadline)
            else:
                if deadline is not None:
                    args[1] = max(0, int((deadline - loop.time()) * _US))
                sent = loop.time()
                code, us, *rest = await pacer._run(pacer._acquire, keys, args)
        except (asyncio.CancelledError, PacerUnavailable) as exc:
            # The script may have run without us learning the answer: undo what it may have taken.
            if isinstance(exc, PacerUnavailable) and not isinstance(exc.__cause__, pacer._timeouts):
                raise
            if cap:
                pacer._background(pacer._release(keys[2], token))
            pacer._background(pacer._run(pacer._give_back, keys[:1], give_back))
            raise
        if code == 0:
            raise BudgetExhausted(us / _US)
        crowded = rest[0]
        windows = tuple(
            WindowState(n, interval, remaining, reset / _US)
            for (n, interval), remaining, reset in zip(plan.limits, rest[1::2], rest[2::2])
        )
        self._holding = bool(cap)
        # Due at once: start now if the answer came back quickly, or if the log had room (fewer
        # than n reservations, so no window can fill up however late this caller starts).
        if us <= 0 and (crowded == 0 or (loop.time() - sent) * _US <= _REDIS_LATE_TOLERANCE_US):
            return Permit(0.0, token=token, windows=windows)
        try:
            # A slow answer means a start later than reserved: confirming shifts the later
            # reservations by that lateness, as for a waiter woken late. Callers that waited
            # confirm too (a pause may have moved the slot). A confirmation that itself comes back
            # slowly (a burst of callers released together: each resumes when the event loop gets
            # to it) is lateness Redis has not seen yet: confirm again, so that it shifts.
            confirm = [token, _REDIS_LATE_TOLERANCE_US, plan.confirm_n]
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
                pacer._background(pacer._run(pacer._give_back, keys[:1], give_back))
            self._release()
            raise
        return Permit(loop.time() - start, token=token, windows=windows)

    async def _acquire_place(self, loop, keys, args, deadline: float | None) -> tuple[int, int, list, float]:
        """Reserves rate and a concurrency place in one script; polls while no place is free.
        Returns the script's answer (code, us, [crowded, windows...]) and when the answering call was sent.

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
                    args[1] = max(0, int((deadline - loop.time()) * _US))
                sent = loop.time()
                code, us, *rest = await pacer._run(pacer._acquire, keys, args)
                if code != 2:
                    return code, us, rest, sent
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
        self._state = self._redis.register_script(_STATE)
        self._plans: dict[Budget, _Plan] = {}
        self._id = f"{uuid.uuid4().hex[:10]}:{os.getpid()}:"
        self._counter = itertools.count()
        self._waiting: dict[str, deque[_Waiter]] = {}  # local FIFO of callers waiting for a place
        self._tasks: set[asyncio.Task] = set()
        self._batch: list[tuple] = []  # (script or None, command, answer) for the next pipeline (_send)

    def slot(self, key: str, budget: Budget, timeout: float | None) -> AbstractAsyncContextManager[Permit]:
        return _RedisSlot(self, key, budget, timeout)

    def _plan(self, budget: Budget) -> _Plan:
        plan = self._plans.get(budget)
        if plan is None:
            if len(self._plans) > 10_000:
                self._plans.clear()
            plan = self._plans[budget] = _Plan(budget, self._margin)
        return plan

    async def pause(self, key: str, seconds: float, reason: str = "") -> None:
        if not seconds > 0:
            return
        base = f"{_PREFIX}{{{key}}}:"
        await self._run(self._pause, (base + "r", base + "p", base + "pr"), [_us(seconds), reason])

    async def started(self, key: str, budget: Budget, permit: Permit) -> None:
        if permit.token is not None:
            rate = f"{_PREFIX}{{{key}}}:r"
            confirm = [permit.token, _REDIS_LATE_TOLERANCE_US, self._plan(budget).confirm_n]
            await self._run(self._confirm, (rate,), confirm)

    async def state(self, key: str, budget: Budget) -> BudgetState:
        plan = self._plan(budget)
        base = f"{_PREFIX}{{{key}}}:"
        keys = (base + "r", base + "p", base + "pr", base + "c", *(base + suffix for suffix in plan.bucket_keys))
        paused, reason, waiting, in_flight, *rest = await self._run(self._state, keys, plan.args[4:])
        windows = tuple(
            WindowUse(n, interval, used, remaining, reset / _US)
            for (n, interval), used, remaining, reset in zip(plan.limits, rest[0::3], rest[1::3], rest[2::3])
        )
        return BudgetState(
            windows,
            waiting=int(waiting) + len(self._waiting.get(key, ())),
            in_flight=int(in_flight),
            paused_for=paused / _US,
            pause_reason=reason.decode() if isinstance(reason, bytes) else str(reason),
        )

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
