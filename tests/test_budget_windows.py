"""Several windows per budget: a request takes a slot in every window and no window is ever
exceeded (in process, through Redis, across processes); a window allowing many requests keeps
bounded state; the permit and `Pacer.state` tell each window's use.

The Redis tests use TEST_REDIS_URL and skip, saying so, without it (see test_pacer)."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import pytest
import redis.asyncio as aioredis

from conftest import TEST_REDIS_URL
from headwater.upstream.budget import BUCKETS, Budget, InProcessPacer, RedisPacer, Window
from headwater.upstream.budget import _types as budget_types
from test_pacer import key, most_starts_in_a_window, now, pacer, redis_url, slack  # noqa: F401 - fixtures


async def _redis_keys(key: str) -> dict[str, str]:
    """The Redis keys of `key`'s budget: suffix -> type."""
    client = aioredis.Redis.from_url(TEST_REDIS_URL, socket_timeout=2, decode_responses=True)
    try:
        prefix = f"headwater:pacer:{{{key}}}:"
        return {k[len(prefix):]: await client.type(k) async for k in client.scan_iter(prefix + "*")}
    finally:
        await client.aclose()


@pytest.fixture(autouse=True)
async def _forget_buckets(key):
    yield
    if TEST_REDIS_URL:
        client = aioredis.Redis.from_url(TEST_REDIS_URL, socket_timeout=2)
        try:
            keys = [k async for k in client.scan_iter(f"headwater:pacer:{{{key}}}:*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


async def _run(pacer, key, budget, callers: int) -> list[float]:
    starts: list[float] = []

    async def call():
        async with pacer.slot(key, budget, timeout=30):
            starts.append(now())

    await asyncio.gather(*(call() for _ in range(callers)))
    return sorted(starts)


# ------------------------------------------------------------------------------------------------
# Every window holds
# ------------------------------------------------------------------------------------------------


async def test_a_request_takes_a_slot_in_every_window(pacer, key):
    budget = Budget(3, 0.2, more=(Window(5, 1.0),))  # 3 per 0.2 s, and 5 per second

    starts = await _run(pacer, key, budget, 10)

    assert most_starts_in_a_window(starts, 0.2, slack(pacer)) <= 3
    assert most_starts_in_a_window(starts, 1.0, slack(pacer)) == 5
    # the second window binds: the 6th start waits for the 1st to leave the second's window
    assert starts[5] - starts[0] >= 1.0 - slack(pacer)


async def test_a_budget_whose_first_window_is_the_longer_one_holds_both(pacer, key):
    budget = Budget(4, 1.0, more=(Window(2, 0.2),))

    starts = await _run(pacer, key, budget, 8)

    assert most_starts_in_a_window(starts, 0.2, slack(pacer)) <= 2
    assert most_starts_in_a_window(starts, 1.0, slack(pacer)) == 4


@pytest.fixture
def exact_log_limit_10(monkeypatch):
    """Windows of more than 10 requests are counted in buckets (not 1,000), so that a test can fill
    one with a few dozen callers: a thousand at once would measure a busy event loop, not pacing."""
    monkeypatch.setattr(budget_types, "EXACT_LOG_LIMIT", 10)


async def test_a_counted_window_is_never_exceeded(pacer, key, exact_log_limit_10):
    budget = Budget(20, 0.5)
    assert budget.windows[0].counted

    starts = await _run(pacer, key, budget, 50)

    assert most_starts_in_a_window(starts, 0.5, slack(pacer)) == 20
    assert starts[20] - starts[0] >= 0.5 - slack(pacer)


async def test_a_counted_window_beside_an_exact_one_holds_both(pacer, key, exact_log_limit_10):
    budget = Budget(4, 0.1, more=(Window(12, 0.6),))
    assert [w.counted for w in budget.windows] == [False, True]

    starts = await _run(pacer, key, budget, 30)

    assert most_starts_in_a_window(starts, 0.1, slack(pacer)) <= 4
    assert most_starts_in_a_window(starts, 0.6, slack(pacer)) == 12
    assert starts[12] - starts[0] >= 0.6 - slack(pacer)


async def test_a_counted_window_of_1500_is_never_exceeded_in_process(key):
    pacer = InProcessPacer()
    budget = Budget(1500, 0.5)
    assert budget.windows[0].counted

    starts = await _run(pacer, key, budget, 2500)

    assert most_starts_in_a_window(starts, 0.5, slack(pacer)) <= 1500
    assert starts[1500] - starts[0] >= 0.5 - slack(pacer)


_OTHER_PROCESS = r"""
import asyncio, json, sys, time
from headwater.upstream.budget import Budget, RedisPacer, Window

async def main(url, key, callers):
    pacer = RedisPacer(url)
    async with pacer.slot(key + "-warm", Budget(1000, 1.0), timeout=5):
        pass
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    starts = []

    async def call():
        async with pacer.slot(key, Budget(3, 0.25, more=(Window(8, 1.0),)), timeout=30):
            starts.append(time.monotonic())

    await asyncio.gather(*(call() for _ in range(callers)))
    await pacer.aclose()
    print(json.dumps(starts), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def test_two_processes_sharing_redis_hold_every_window_together(redis_url, key):
    budget = Budget(3, 0.25, more=(Window(8, 1.0),))
    other = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _OTHER_PROCESS, redis_url, key, "10",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    mine = RedisPacer(redis_url)
    try:
        async with mine.slot(key + "-warm", Budget(1000, 1.0), timeout=5):
            pass
        assert await asyncio.wait_for(other.stdout.readline(), 15) == b"ready\n"
        starts: list[float] = []

        async def call():
            async with mine.slot(key, budget, timeout=30):
                starts.append(time.monotonic())

        other.stdin.write(b"go\n")
        await other.stdin.drain()
        await asyncio.gather(*(call() for _ in range(10)))
        starts += json.loads(await asyncio.wait_for(other.stdout.readline(), 15))
        assert await other.wait() == 0
    finally:
        if other.returncode is None:
            other.kill()
            await other.wait()
        await mine.aclose()

    assert len(starts) == 20
    assert most_starts_in_a_window(starts, 0.25, slack=0.015) <= 3
    assert most_starts_in_a_window(starts, 1.0, slack=0.015) == 8


# ------------------------------------------------------------------------------------------------
# Memory: a long window keeps buckets, not a timestamp per request
# ------------------------------------------------------------------------------------------------


async def _held(pacer, key) -> tuple[int, int]:
    """(reservations in the log, buckets of the counted windows) the pacer holds for `key`."""
    if isinstance(pacer, RedisPacer):
        client = aioredis.Redis.from_url(TEST_REDIS_URL, socket_timeout=2)
        try:
            prefix = f"headwater:pacer:{{{key}}}:"
            log = await client.zcard(prefix + "r")
            buckets = 0
            for suffix, kind in (await _redis_keys(key)).items():
                if suffix.startswith("b"):
                    assert kind == "hash"
                    buckets += await client.hlen(prefix + suffix) - 4  # h, t, n and hl beside the buckets
            return log, buckets
        finally:
            await client.aclose()
    st = pacer._keys[key]
    return len(st.times), sum(len(c.buckets) for c in st.counts.values())


async def test_a_day_window_of_250000_keeps_buckets_not_a_timestamp_per_request(pacer, key):
    budget = Budget(250_000, 86_400)  # a day

    for _ in range(3):
        await _run(pacer, key, budget, 1000)

    log, buckets = await _held(pacer, key)
    # the slack of past reservations kept for give-backs (through Redis, and a batch of up to 16
    # starts on their way to the buckets)
    assert log <= 8 + 16
    assert buckets == 1  # 3000 starts within one bucket of 864 s
    state = await pacer.state(key, budget)
    assert state.windows[0].used == 3000
    assert state.windows[0].remaining == 250_000 - 3000


async def test_the_buckets_of_a_counted_window_stay_bounded_however_long_it_runs(pacer, key):
    budget = Budget(2000, 0.2)  # buckets of 2 ms
    most = 0
    t0 = now()
    while now() - t0 < 0.7:  # three and a half windows of sustained demand
        await _run(pacer, key, budget, 50)
        most = max(most, (await _held(pacer, key))[1])

    assert 0 < most <= BUCKETS + 2


# ------------------------------------------------------------------------------------------------
# What a caller can see
# ------------------------------------------------------------------------------------------------


async def test_the_permit_tells_each_windows_remaining_and_reset(pacer, key):
    budget = Budget(3, 10, more=(Window(5, 60),))

    async with pacer.slot(key, budget, timeout=1) as first:
        pass
    async with pacer.slot(key, budget, timeout=1) as second:
        pass

    assert [(w.limit, w.interval, w.remaining) for w in first.windows] == [(3, 10, 2), (5, 60, 4)]
    assert [w.remaining for w in second.windows] == [1, 3]
    # the first start leaves each window an interval after it
    assert 9 < second.windows[0].reset <= 10
    assert 59 < second.windows[1].reset <= 60


async def test_state_tells_use_waiting_callers_and_the_pause_with_its_reason(pacer, key):
    budget = Budget(2, 10, more=(Window(4, 60),))
    for _ in range(2):
        async with pacer.slot(key, budget, timeout=1):
            pass
    waiter = asyncio.create_task(_run(pacer, key, budget, 1))  # its turn is 10 s away
    await asyncio.sleep(0.1)
    await pacer.pause(key, 30, reason="upstream 429: Retry-After 30")

    state = await pacer.state(key, budget)

    assert [(w.limit, w.used, w.remaining) for w in state.windows] == [(2, 2, 0), (4, 2, 1)]
    assert 9 < state.windows[0].reset <= 10
    assert state.waiting == 1
    assert 29 < state.paused_for <= 30
    assert state.pause_reason == "upstream 429: Retry-After 30"
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_state_of_an_unused_budget_is_all_room(pacer, key):
    state = await pacer.state(key, Budget(100, 10, more=(Window(250_000, 86_400),)))

    assert [(w.used, w.remaining, w.reset) for w in state.windows] == [(0, 100, 0), (0, 250_000, 0)]
    assert (state.waiting, state.paused_for, state.pause_reason) == (0, 0, "")


def test_a_budget_names_the_window_that_is_wrong():
    with pytest.raises(ValueError, match=r"windows\[0\]\.interval must be positive"):
        Budget(10, 1, more=(Window(5, 0),))
    with pytest.raises(ValueError, match=r"windows\[0\]\.allowed_requests must be a positive integer"):
        Budget(10, 1, more=(Window(0, 60),))
    with pytest.raises(ValueError, match=r"windows\[0\]\.interval 1 is the interval of another window"):
        Budget(10, 1, more=(Window(5, 1),))
