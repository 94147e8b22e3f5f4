"""TtlCache: the short-lived cache in front of the token, account and project lookups."""

from __future__ import annotations

import asyncio

import pytest

from headwater.cache import TtlCache


class Loader:
    """A load that takes a while and counts how often it ran."""

    def __init__(self, value="v", error: Exception | None = None):
        self.value, self.error, self.calls = value, error, 0

    async def __call__(self):
        self.calls += 1
        await asyncio.sleep(0.05)
        if self.error:
            raise self.error
        return self.value


async def test_callers_asking_at_once_share_one_load():
    cache, load = TtlCache(ttl=60), Loader()

    answers = await asyncio.gather(*(cache.get("key", load) for _ in range(50)))

    assert answers == ["v"] * 50
    assert load.calls == 1


async def test_an_answer_is_reused_until_it_expires():
    cache, load = TtlCache(ttl=0.1), Loader()

    await cache.get("key", load)
    await cache.get("key", load)
    await asyncio.sleep(0.15)
    await cache.get("key", load)

    assert load.calls == 2


async def test_with_no_ttl_only_a_load_in_flight_is_shared():
    cache, load = TtlCache(ttl=0), Loader()

    together = await asyncio.gather(*(cache.get("key", load) for _ in range(5)))
    later = await cache.get("key", load)

    assert together == ["v"] * 5 and later == "v"
    assert load.calls == 2
    assert cache.peek("key") is None


async def test_a_failed_load_reaches_every_waiting_caller_and_is_not_remembered():
    cache, failing = TtlCache(ttl=60), Loader(error=LookupError("gone"))

    results = await asyncio.gather(*(cache.get("key", failing) for _ in range(3)), return_exceptions=True)

    assert [type(r) for r in results] == [LookupError] * 3
    assert failing.calls == 1
    assert await cache.get("key", Loader("back")) == "back"


async def test_a_caller_that_gives_up_does_not_cancel_the_others_load():
    cache, load = TtlCache(ttl=60), Loader()
    impatient = asyncio.create_task(cache.get("key", load))
    patient = asyncio.create_task(cache.get("key", load))
    await asyncio.sleep(0.01)

    impatient.cancel()

    assert await patient == "v"
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_clear_during_a_load_keeps_its_answer_out_of_the_cache():
    cache, old = TtlCache(ttl=60), Loader("old")
    loading = asyncio.create_task(cache.get("key", old))
    await asyncio.sleep(0.01)

    cache.clear()  # e.g. the credential changed while its old row was being read

    assert await loading == "old"  # the caller that asked before the change gets what was read
    assert await cache.get("key", Loader("new")) == "new"
