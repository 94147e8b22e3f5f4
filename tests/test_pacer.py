"""The pacer: one budget per credential, for every upstream request made with it.

Every behaviour test runs against both implementations: the in-process pacer and the Redis-shared
one. The Redis variant uses TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/0) and skips, saying so,
when it is unset or unreachable. Each test paces a key of its own and deletes only that key's Redis
keys afterwards (never FLUSHALL). Tests that need a Redis to break start their own redis-server on
a spare port (skipped if the binary is missing).

Intervals are short (tenths of a second) to keep the suite fast. Start times are measured on
time.monotonic (the event loop's clock, shared by all processes of the machine). The Redis pacer
schedules on Redis's clock and the start is seen after a network round trip, so its window checks
allow a few milliseconds of measuring slack; the in-process pacer is checked almost exactly.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import sys
import time
import uuid

import pytest
import redis.asyncio as aioredis

from conftest import TEST_REDIS_URL, redis_unavailable_reason
from headwater.upstream.budget import (
    Budget,
    BudgetExhausted,
    InProcessPacer,
    PacerUnavailable,
    RedisPacer,
    make_pacer,
)


async def _delete_keys(*keys: str) -> None:
    client = aioredis.Redis.from_url(TEST_REDIS_URL, socket_timeout=2)
    try:
        await client.delete(*(f"headwater:pacer:{{{k}}}:{part}" for k in keys for part in "rpc"))
    finally:
        await client.aclose()


@pytest.fixture
def key() -> str:
    """A key (credential id) of this test's own."""
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture(params=["in-process", "redis"])
async def pacer(request, key):
    if request.param == "in-process":
        p = InProcessPacer()
        yield p
        await p.aclose()
        return
    reason = await redis_unavailable_reason()
    if reason:
        pytest.skip(reason)
    p = RedisPacer(TEST_REDIS_URL)
    await _warm_up(p)
    try:
        yield p
    finally:
        await p.aclose()
        await _delete_keys(key)


@pytest.fixture
async def redis_url(key):
    reason = await redis_unavailable_reason()
    if reason:
        pytest.skip(reason)
    yield TEST_REDIS_URL
    await _delete_keys(key)


async def _warm_up(p) -> None:
    """Opens a few connections and loads the scripts, so timings measure pacing, not set-up."""
    warm = f"warm-{uuid.uuid4().hex}"

    async def one():
        async with p.slot(warm, Budget(1000, 1.0, max_concurrent=100), timeout=5):
            pass

    await asyncio.gather(*(one() for _ in range(8)))
    await p.pause(warm, 0.001)
    if TEST_REDIS_URL and isinstance(p, RedisPacer):
        await _delete_keys(warm)


def slack(p) -> float:
    """Measuring slack for window checks (see the module docstring)."""
    return 0.02 if isinstance(p, RedisPacer) else 0.002


def most_starts_in_a_window(starts: list[float], interval: float, slack: float = 0.0) -> int:
    """The largest number of starts in any window [t, t + interval - slack)."""
    starts = sorted(starts)
    most, j = 0, 0
    for i, t in enumerate(starts):
        while j < len(starts) and starts[j] < t + interval - slack:
            j += 1
        most = max(most, j - i)
    return most


def now() -> float:
    return asyncio.get_running_loop().time()


# ------------------------------------------------------------------------------------------------
# Rate
# ------------------------------------------------------------------------------------------------


async def test_never_more_than_n_starts_in_any_window_of_interval(pacer, key):
    budget = Budget(10, 0.25)
    starts: list[float] = []

    async def call():
        async with pacer.slot(key, budget, timeout=10):
            starts.append(now())

    t0 = now()
    await asyncio.gather(*(call() for _ in range(40)))
    elapsed = now() - t0

    assert len(starts) == 40
    assert most_starts_in_a_window(starts, budget.interval, slack(pacer)) == 10
    # ...and no slower than needed: the first 10 at once, the 30 others one every 0.025 s from
    # 0.25 s on (plus what callers woken late, by a busy machine or Redis round trips, shift the
    # schedule by).
    assert 0.97 <= elapsed < (1.35 if isinstance(pacer, RedisPacer) else 1.15)


async def test_under_sustained_demand_starts_are_spread_evenly_not_in_bursts(pacer, key):
    """A budget with room lets a burst through at once; callers who have to wait are spaced
    interval/N apart, so that requests which reach the provider a little late cannot meet the
    next burst in one window."""
    budget = Budget(5, 0.2)
    starts: list[float] = []

    async def call():
        async with pacer.slot(key, budget, timeout=10):
            starts.append(now())

    await asyncio.gather(*(call() for _ in range(15)))

    starts.sort()
    assert starts[4] - starts[0] < slack(pacer), "the first five at once"
    gaps = [b - a for a, b in zip(starts[5:], starts[6:])]
    assert all(gap >= 0.04 - slack(pacer) for gap in gaps), gaps  # never two together
    # ...and no slower than that: the ten that waited span nine gaps of 0.04 s (a caller woken
    # late by a busy machine moves the ones behind it by its lateness, hence the allowance).
    assert starts[-1] - starts[5] < 0.36 + 0.1, gaps


async def test_a_margin_widens_every_interval(key):
    """HEADWATER_PACING_MARGIN_MS: the budget holds for windows of interval + margin, so it still
    holds at the provider for requests that reach it up to the margin later than they left."""
    pacer = InProcessPacer(margin=0.05)
    budget = Budget(2, 0.2)
    starts: list[float] = []

    async def call():
        async with pacer.slot(key, budget, timeout=10):
            starts.append(now())

    await asyncio.gather(*(call() for _ in range(3)))

    starts.sort()
    assert 0.25 - slack(pacer) <= starts[2] - starts[0] < 0.3
    assert most_starts_in_a_window(starts, 0.25, slack(pacer)) == 2


async def test_a_stalled_event_loop_does_not_crowd_a_window(pacer, key):
    """Callers woken late (the process was busy) must not start together with the next batch:
    the window holds for actual starts, not only for reservations."""
    budget = Budget(5, 0.2)
    starts: list[float] = []

    async def call():
        async with pacer.slot(key, budget, timeout=10):
            starts.append(now())

    callers = [asyncio.create_task(call()) for _ in range(20)]  # turns at 0, 0.2, 0.4, 0.6
    await asyncio.sleep(0.1)
    time.sleep(0.35)  # blocks the event loop past the turns at 0.2 and 0.4
    await asyncio.gather(*callers)

    assert len(starts) == 20
    assert most_starts_in_a_window(starts, budget.interval, slack(pacer)) == 5


async def test_a_request_that_starts_after_its_slot_moves_the_window(pacer, key):
    """`started`: a request that waited for something else after its slot (a sync read, for the
    credential's budget after its share's) counts from when it really started."""
    budget = Budget(1, 0.2)
    t0 = now()
    async with pacer.slot(key, budget, timeout=5) as permit:
        await asyncio.sleep(0.1)  # waiting for another budget
        await pacer.started(key, budget, permit)

    async with pacer.slot(key, budget, timeout=5):
        next_start = now() - t0

    assert next_start >= 0.3 - slack(pacer), "an interval after the real start, not after the slot"


async def test_callers_are_served_first_come_first_served(pacer, key):
    budget = Budget(1, 0.04)  # one start per turn, so that every caller has a turn of its own
    order: list[int] = []

    async def call(i):
        async with pacer.slot(key, budget, timeout=10):
            order.append(i)

    tasks = []
    for i in range(10):
        tasks.append(asyncio.create_task(call(i)))
        await asyncio.sleep(0.003)
    await asyncio.gather(*tasks)

    assert order == list(range(10))


async def test_a_caller_whose_turn_is_past_its_deadline_fails_at_once(pacer, key):
    budget = Budget(2, 0.4)
    t0 = now()
    for _ in range(2):
        async with pacer.slot(key, budget, timeout=1):
            pass

    asked = now()
    with pytest.raises(BudgetExhausted) as exhausted:
        async with pacer.slot(key, budget, timeout=0.1):
            pytest.fail("must not start")

    assert now() - asked < 0.05, "fails at once, without sleeping until the deadline"
    assert 0.3 < exhausted.value.retry_after <= 0.41, "retry_after: when the next slot frees up"


async def test_a_caller_that_fails_its_deadline_consumes_no_budget(pacer, key):
    budget = Budget(2, 0.4)
    t0 = now()
    for _ in range(2):
        async with pacer.slot(key, budget, timeout=1):
            pass
    for _ in range(3):
        with pytest.raises(BudgetExhausted):
            async with pacer.slot(key, budget, timeout=0.05):
                pass

    starts: list[float] = []

    async def call():
        async with pacer.slot(key, budget, timeout=2):
            starts.append(now() - t0)

    await asyncio.gather(call(), call())
    # As if the failed callers had never asked: the first at 0.4 s, when the window has room
    # again, the second spaced interval/N (0.2 s) after it.
    starts.sort()
    assert 0.39 < starts[0] < 0.47 and 0.59 < starts[1] < 0.67, starts


async def test_the_budget_is_read_on_every_call(pacer, key):
    for _ in range(2):
        async with pacer.slot(key, Budget(2, 10), timeout=0):
            pass
    with pytest.raises(BudgetExhausted):
        async with pacer.slot(key, Budget(2, 10), timeout=0):
            pass

    # The user raised the limit: it takes effect at once.
    async with pacer.slot(key, Budget(4, 10), timeout=0) as permit:
        assert permit.waited == 0
    async with pacer.slot(key, Budget(4, 10), timeout=0):
        pass
    with pytest.raises(BudgetExhausted):
        async with pacer.slot(key, Budget(4, 10), timeout=0):
            pass
    # ...and lowered again.
    with pytest.raises(BudgetExhausted):
        async with pacer.slot(key, Budget(3, 10), timeout=0):
            pass


async def test_a_raised_limit_does_not_let_newcomers_overtake_waiting_callers(pacer, key):
    t0 = now()
    starts: dict[str, float] = {}

    async def call(name, budget):
        async with pacer.slot(key, budget, timeout=2):
            starts[name] = now() - t0

    await call("first", Budget(1, 0.3))
    waiting = asyncio.create_task(call("waiting", Budget(1, 0.3)))  # its turn: at 0.3 s
    await asyncio.sleep(0.02)
    await call("newcomer", Budget(3, 0.3))  # room for it now, but not before the caller waiting
    await waiting
    assert starts["newcomer"] >= starts["waiting"] - slack(pacer)
    # Right behind it: spaced interval/N (0.1 s) after the waiting caller's turn.
    assert 0.4 - slack(pacer) <= starts["newcomer"] < 0.45


async def test_no_deadline_waits_as_long_as_needed(pacer, key):
    budget = Budget(1, 0.2)
    async with pacer.slot(key, budget, timeout=None) as first:
        pass
    async with pacer.slot(key, budget, timeout=None) as second:
        pass
    assert first.waited == 0
    assert 0.17 < second.waited < 0.3


async def test_permit_waited_reports_the_wait(pacer, key):
    budget = Budget(1, 0.2)
    waits: list[float] = []

    async def call():
        async with pacer.slot(key, budget, timeout=2) as permit:
            waits.append(permit.waited)

    await asyncio.gather(call(), call(), call())

    assert waits[0] < 0.01
    assert 0.17 < waits[1] < 0.25
    assert 0.37 < waits[2] < 0.45


async def test_a_caller_cancelled_while_waiting_gives_its_turn_back(pacer, key):
    budget = Budget(1, 0.3)
    t0 = now()
    async with pacer.slot(key, budget, timeout=1):
        pass

    async def call():
        async with pacer.slot(key, budget, timeout=1):
            pytest.fail("cancelled before its turn")

    waiting = asyncio.create_task(call())
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.sleep(0.01)  # the Redis pacer gives back in the background

    # The next caller gets the cancelled caller's turn, not the one after it.
    async with pacer.slot(key, budget, timeout=0.4):
        started = now() - t0
    assert 0.29 < started < 0.36


# ------------------------------------------------------------------------------------------------
# Concurrency
# ------------------------------------------------------------------------------------------------


async def _run_overlapping(pacer, key, budget, callers=12, hold=0.03) -> int:
    """Runs callers that each hold their place for `hold` s; returns the most seen in flight."""
    in_flight = most = 0

    async def call():
        nonlocal in_flight, most
        async with pacer.slot(key, budget, timeout=5):
            in_flight += 1
            most = max(most, in_flight)
            await asyncio.sleep(hold)
            in_flight -= 1

    await asyncio.gather(*(call() for _ in range(callers)))
    return most


async def test_max_concurrent_caps_requests_in_flight(pacer, key):
    assert await _run_overlapping(pacer, key, Budget(1000, 1.0, max_concurrent=3)) == 3


async def test_max_concurrent_zero_means_no_cap(pacer, key):
    assert await _run_overlapping(pacer, key, Budget(1000, 1.0, max_concurrent=0)) == 12


async def test_waiting_for_a_concurrency_place_is_first_come_first_served(pacer, key):
    budget = Budget(1000, 1.0, max_concurrent=1)
    order: list[int] = []

    async def call(i):
        async with pacer.slot(key, budget, timeout=5):
            order.append(i)
            await asyncio.sleep(0.01)

    tasks = []
    for i in range(8):
        tasks.append(asyncio.create_task(call(i)))
        await asyncio.sleep(0.002)
    await asyncio.gather(*tasks)

    assert order == list(range(8))


async def test_waiting_for_a_concurrency_place_is_bounded_by_the_deadline(pacer, key):
    budget = Budget(1000, 1.0, max_concurrent=1)
    async with pacer.slot(key, budget, timeout=1):
        with pytest.raises(BudgetExhausted) as immediately:
            async with pacer.slot(key, budget, timeout=0):
                pytest.fail("no place is free")
        asked = now()
        with pytest.raises(BudgetExhausted) as after_deadline:
            async with pacer.slot(key, budget, timeout=0.1):
                pytest.fail("no place is free")
        assert 0.09 < now() - asked < 0.2
    assert immediately.value.retry_after > 0
    assert after_deadline.value.retry_after > 0

    # The place is free again once the holder is done; the callers that gave up took nothing.
    async with pacer.slot(key, budget, timeout=0) as permit:
        assert permit.waited == 0


async def test_a_failing_request_frees_its_concurrency_place(pacer, key):
    budget = Budget(1000, 1.0, max_concurrent=1)
    with pytest.raises(RuntimeError):
        async with pacer.slot(key, budget, timeout=1):
            raise RuntimeError("upstream broke")
    async with pacer.slot(key, budget, timeout=0):
        pass


async def test_a_raised_concurrency_cap_takes_effect(pacer, key):
    async with pacer.slot(key, Budget(1000, 1.0, max_concurrent=1), timeout=1):
        with pytest.raises(BudgetExhausted):
            async with pacer.slot(key, Budget(1000, 1.0, max_concurrent=1), timeout=0):
                pass
        async with pacer.slot(key, Budget(1000, 1.0, max_concurrent=2), timeout=0):
            pass


# ------------------------------------------------------------------------------------------------
# Pause (upstream 429/503 with Retry-After)
# ------------------------------------------------------------------------------------------------


async def test_pause_holds_back_every_caller_until_it_ends(pacer, key):
    budget = Budget(100, 1.0)
    t0 = now()
    await pacer.pause(key, 0.3)
    # The pause runs from when the pacer took it: with Redis, somewhere in this first round trip
    # (a new connection, the scripts loaded), which a busy machine can stretch.
    taken = now() - t0
    starts: list[float] = []

    async def call():
        async with pacer.slot(key, budget, timeout=2):
            starts.append(now() - t0)

    await asyncio.gather(*(call() for _ in range(5)))
    assert all(0.3 - slack(pacer) <= s < taken + 0.36 for s in starts), (taken, starts)


async def test_pause_holds_back_callers_already_waiting_and_keeps_the_pace(pacer, key):
    budget = Budget(1, 0.2)
    t0 = now()
    starts: list[float] = []

    async def call():
        async with pacer.slot(key, budget, timeout=5):
            starts.append(now() - t0)

    tasks = [asyncio.create_task(call()) for _ in range(3)]  # turns at 0, 0.2, 0.4
    await asyncio.sleep(0.05)
    await pacer.pause(key, 0.4)  # until 0.45
    await pacer.pause(key, 0.4)  # several 429s saying the same do not add up
    await asyncio.gather(*tasks)

    assert starts[0] < 0.02
    assert 0.45 - slack(pacer) <= starts[1] < 0.5, starts
    assert 0.65 - slack(pacer) <= starts[2] < 0.7, starts
    assert most_starts_in_a_window(starts, budget.interval, slack(pacer)) == 1


async def test_a_pause_that_ends_after_the_deadline_fails_at_once(pacer, key):
    await pacer.pause(key, 1.0)
    asked = now()
    with pytest.raises(BudgetExhausted) as exhausted:
        async with pacer.slot(key, Budget(100, 1.0), timeout=0.2):
            pass
    assert now() - asked < 0.05
    assert 0.9 < exhausted.value.retry_after <= 1.0


# ------------------------------------------------------------------------------------------------
# In-process only
# ------------------------------------------------------------------------------------------------


async def test_make_pacer_is_in_process_without_a_url_and_redis_with_one():
    local = make_pacer(None)
    shared = make_pacer("redis://127.0.0.1:1/0")
    assert isinstance(local, InProcessPacer)
    assert isinstance(shared, RedisPacer)
    await local.aclose()
    await shared.aclose()


def test_a_budget_must_allow_something():
    with pytest.raises(ValueError):
        Budget(0, 1.0)
    with pytest.raises(ValueError):
        Budget(10, 0)
    with pytest.raises(ValueError):
        Budget(10, 1.0, max_concurrent=-1)


async def test_the_in_process_pacer_forgets_idle_keys(key):
    pacer = InProcessPacer(sweep_interval=0)
    for i in range(50):
        async with pacer.slot(f"{key}-{i}", Budget(5, 0.05), timeout=1):
            pass
    await asyncio.sleep(0.06)
    async with pacer.slot(key, Budget(5, 0.05), timeout=1):
        pass
    assert list(pacer._keys) == [key]


async def test_the_in_process_log_stays_bounded(key):
    pacer = InProcessPacer()
    budget = Budget(5, 0.01)
    for _ in range(200):
        async with pacer.slot(key, budget, timeout=1):
            pass
    assert len(pacer._keys[key].times) <= 5 + 8


# ------------------------------------------------------------------------------------------------
# Redis only: one budget for several processes; never unpaced
# ------------------------------------------------------------------------------------------------

_OTHER_PROCESS = r"""
import asyncio, json, sys, time
from headwater.upstream.budget import Budget, RedisPacer

async def main(url, key, callers, allowed, interval):
    pacer = RedisPacer(url)
    async with pacer.slot(key + "-warm", Budget(1000, 1.0), timeout=5):
        pass
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    starts = []

    async def call():
        async with pacer.slot(key, Budget(allowed, interval), timeout=30):
            starts.append(time.monotonic())

    await asyncio.gather(*(call() for _ in range(callers)))
    await pacer.aclose()
    print(json.dumps(starts), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])))
"""


async def test_several_processes_sharing_a_key_never_exceed_the_budget_together(redis_url, key):
    budget = Budget(10, 0.25)
    other = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _OTHER_PROCESS, redis_url, key, "20", "10", "0.25",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    first, second = RedisPacer(redis_url), RedisPacer(redis_url)
    try:
        await _warm_up(first)
        await _warm_up(second)
        assert await asyncio.wait_for(other.stdout.readline(), 15) == b"ready\n"
        starts: list[float] = []

        async def call(p):
            async with p.slot(key, budget, timeout=30):
                starts.append(time.monotonic())

        other.stdin.write(b"go\n")
        await other.stdin.drain()
        await asyncio.gather(*(call(p) for p in (first, second) for _ in range(20)))
        starts += json.loads(await asyncio.wait_for(other.stdout.readline(), 15))
        assert await other.wait() == 0
    finally:
        if other.returncode is None:
            other.kill()
            await other.wait()
        await first.aclose()
        await second.aclose()
        await _delete_keys(key + "-warm")

    assert len(starts) == 60
    assert most_starts_in_a_window(starts, budget.interval, slack=0.015) == 10


async def test_several_pacers_sharing_a_key_share_the_concurrency_cap(redis_url, key):
    budget = Budget(1000, 1.0, max_concurrent=2)
    pacers = [RedisPacer(redis_url) for _ in range(3)]
    in_flight = most = 0

    async def call(p):
        nonlocal in_flight, most
        async with p.slot(key, budget, timeout=5):
            in_flight += 1
            most = max(most, in_flight)
            await asyncio.sleep(0.02)
            in_flight -= 1

    try:
        await asyncio.gather(*(call(p) for p in pacers for _ in range(4)))
    finally:
        for p in pacers:
            await p.aclose()
    assert most == 2


async def test_redis_keys_vanish_when_idle(redis_url, key):
    pacer = RedisPacer(redis_url)
    try:
        await pacer.pause(key, 0.01)
        async with pacer.slot(key, Budget(10, 0.05, max_concurrent=2), timeout=1):
            pass
    finally:
        await pacer.aclose()
    client = aioredis.Redis.from_url(redis_url)
    try:
        for part in "rpc":
            ttl = await client.pttl(f"headwater:pacer:{{{key}}}:{part}")
            assert ttl == -2 or 0 < ttl <= 15_000, (part, ttl)  # gone, or expiring soon
    finally:
        await client.aclose()


async def test_callers_at_the_same_moment_share_one_round_trip_and_keep_their_order(redis_url, key):
    """Auto-pipelining: the scripts of callers that ask during one pass of the event loop go to
    Redis as one pipeline, still in call order (first come, first served)."""
    pacer = RedisPacer(redis_url)
    order: list[int] = []

    async def call(i):
        async with pacer.slot(key, Budget(1, 0.03), timeout=5):
            order.append(i)

    try:
        await asyncio.gather(*(call(i) for i in range(8)))
    finally:
        await pacer.aclose()
    assert order == list(range(8))


async def test_redis_forgetting_the_scripts_does_not_fail_callers(own_redis, key):
    """After a Redis restart (or SCRIPT FLUSH) the scripts are loaded again and the callers served."""
    url, _ = own_redis
    pacer = RedisPacer(url)
    client = aioredis.Redis.from_url(url)
    try:
        async with pacer.slot(key, Budget(10, 1.0), timeout=5):
            pass
        await client.script_flush()

        async def call():
            async with pacer.slot(key, Budget(10, 1.0), timeout=5) as permit:
                return permit

        permits = await asyncio.gather(*(call() for _ in range(3)))
        assert len(permits) == 3
    finally:
        await client.aclose()
        await pacer.aclose()


def _spare_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_an_unreachable_redis_means_pacer_unavailable_not_an_unpaced_request(key):
    pacer = RedisPacer(f"redis://127.0.0.1:{_spare_port()}/0")
    try:
        asked = now()
        with pytest.raises(PacerUnavailable):
            async with pacer.slot(key, Budget(10, 1.0), timeout=5):
                pytest.fail("must not run unpaced")
        with pytest.raises(PacerUnavailable):
            await pacer.pause(key, 1.0)
        assert now() - asked < 2
    finally:
        await pacer.aclose()


@pytest.fixture
async def own_redis():
    """A redis-server of this test's own, on a spare port, to break at will."""
    binary = shutil.which("redis-server")
    if not binary:
        pytest.skip("redis-server is not installed")
    port = _spare_port()
    server = await asyncio.create_subprocess_exec(
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = aioredis.Redis.from_url(url, socket_connect_timeout=0.2)
    try:
        for _ in range(100):
            try:
                await client.ping()
                break
            except Exception:  # noqa: BLE001 - not up yet
                await asyncio.sleep(0.02)
        else:
            pytest.fail("redis-server did not start")
    finally:
        await client.aclose()
    yield url, server
    if server.returncode is None:
        try:
            server.send_signal(signal.SIGCONT)
        except ProcessLookupError:
            pass
        server.kill()
        await server.wait()


async def test_redis_going_away_mid_flight_means_pacer_unavailable(own_redis, key):
    url, server = own_redis
    pacer = RedisPacer(url)
    budget = Budget(1, 0.3)
    try:
        async with pacer.slot(key, budget, timeout=1):
            pass

        async def waiting_caller():
            async with pacer.slot(key, budget, timeout=1):
                pytest.fail("must not run unpaced")

        waiting = asyncio.create_task(waiting_caller())  # waits for its turn at 0.3 s
        await asyncio.sleep(0.05)
        server.kill()
        await server.wait()

        with pytest.raises(PacerUnavailable):
            await waiting  # its turn came, but the pacer cannot confirm it
        with pytest.raises(PacerUnavailable):
            async with pacer.slot(key, budget, timeout=1):
                pytest.fail("must not run unpaced")
    finally:
        await pacer.aclose()


async def test_a_hung_redis_means_pacer_unavailable_after_a_short_timeout(own_redis, key):
    url, server = own_redis
    pacer = RedisPacer(url, socket_timeout=0.2)
    try:
        async with pacer.slot(key, Budget(10, 1.0), timeout=1):
            pass
        server.send_signal(signal.SIGSTOP)
        asked = now()
        with pytest.raises(PacerUnavailable):
            async with pacer.slot(key, Budget(10, 1.0), timeout=5):
                pytest.fail("must not run unpaced")
        assert now() - asked < 1.0
    finally:
        server.send_signal(signal.SIGCONT)
        await pacer.aclose()
