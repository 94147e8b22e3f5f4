"""A short-lived cache of database answers for the hot path (who owns a token, a credential's account).

    accounts = TtlCache(ttl=2.0)
    account = await accounts.get(("sync", org_id, sync_id), lambda: store.run(load, org_id, sync_id))
    accounts.clear()      # after a change made in this process

An answer is reused for `ttl` seconds. When it expires under load, the callers asking for the same
key at that moment share ONE load rather than queueing one query each on the database (at 64
connections, one query each every `ttl` seconds showed as a p99 of hundreds of milliseconds).
With `ttl=0` nothing is kept: only a load in flight is shared (one token refresh at a time).
A failed load is not remembered: its error goes to the callers that shared it, the next call tries
again. `clear()` also disowns loads in flight, so an answer read before the change is not stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class TtlCache(Generic[T]):
    def __init__(self, ttl: float, max_entries: int = 10_000):
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[float, T]] = {}  # key -> (expiry on time.monotonic, answer)
        self._loading: dict[Hashable, asyncio.Future[T]] = {}
        self._generation = 0  # bumped by clear(): loads started before it store nothing

    def peek(self, key: Hashable, default=None):
        """The cached answer if it is fresh, else `default`; never loads (no await on the hot path)."""
        hit = self._entries.get(key)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else default

    async def get(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        hit = self._entries.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        loading = self._loading.get(key)
        if loading is None:
            loading = self._loading[key] = asyncio.ensure_future(self._load(key, load, self._generation))
            loading.add_done_callback(_retrieve)
        # shield: a caller that gives up (cancelled, deadline) does not cancel the others' load.
        return await asyncio.shield(loading)

    def clear(self) -> None:
        self._entries.clear()
        self._loading.clear()
        self._generation += 1

    async def _load(self, key: Hashable, load: Callable[[], Awaitable[T]], generation: int) -> T:
        try:
            value = await load()
        finally:
            if self._generation == generation:
                self._loading.pop(key, None)
        if self._generation == generation and self.ttl > 0:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (time.monotonic() + self.ttl, value)
        return value


def _retrieve(future: asyncio.Future) -> None:
    """Marks a failed load's error as seen even if every caller gave up waiting for it."""
    if not future.cancelled():
        future.exception()
