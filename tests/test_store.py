"""The store's units of work (headwater.store.Store.run), as the servers' loops rely on them."""

from __future__ import annotations

import asyncio
import random

from headwater.store import Store
from headwater.store.models import Consumer


async def test_a_task_cancelled_while_it_runs_units_of_work_always_ends(database_url):
    # What webhook delivery does: units of work in a loop that logs ordinary errors and goes on.
    # Python 3.11's asyncio.wait_for, which the connection pools use, can swallow a cancellation
    # that arrives as a connection is handed over (CPython gh-86296): such a loop then never
    # stopped, and Server.stop waited for it for ever. Cancelled at many random moments, it ends.
    store = Store.open(database_url)
    await store.migrate()

    async def loop_of_units():
        while True:
            try:
                await store.run(lambda: list(Consumer.select().limit(1)))
            except Exception:
                pass

    try:
        stuck = 0
        for _ in range(150):
            task = asyncio.create_task(loop_of_units())
            await asyncio.sleep(random.uniform(0, 0.005))
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=2)
            if not done:
                stuck += 1
                task.cancel()  # once more, so that the test itself ends
                await asyncio.wait([task], timeout=2)
    finally:
        await store.close()

    assert stuck == 0
