"""The values every pacer shares: the budget, the permit, the errors and the Pacer protocol."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

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


def _check_margin(margin: float) -> float:
    if not margin >= 0:
        raise ValueError(f"the pacing margin must be >= 0 seconds, not {margin!r}")
    return float(margin)


