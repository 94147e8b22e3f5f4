"""The values every pacer shares: the budget and its windows, the permit, what a budget's state
looks like, the errors and the Pacer protocol."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import NamedTuple, Protocol

# Past reservations kept beyond the N the rate needs, so that cancelled waiters can give theirs back.
_LOG_SLACK = 8
# A caller woken later than this after its slot shifts the reservations behind it (see _sleep_until).
_LATE_TOLERANCE = 0.001
# retry_after reported when no concurrency place freed up before the deadline (nothing better known).
_BUSY_RETRY_AFTER = 1.0
# A window allowing at most this many requests is followed by the exact log of start times; a
# larger one (250,000 a day) by counts per bucket of start times (see the package docstring).
EXACT_LOG_LIMIT = 1000
# Buckets a counted window is cut into: a start is counted for at most interval * (1 + 1/BUCKETS).
BUCKETS = 100


@dataclass(frozen=True)
class Window:
    """At most `allowed_requests` request starts in any `interval` seconds (a sliding window)."""

    allowed_requests: int  # > 0
    interval: float  # seconds, > 0

    @property
    def counted(self) -> bool:
        """Whether the window is followed by bucket counts rather than the exact log."""
        return self.allowed_requests > EXACT_LOG_LIMIT


@dataclass(frozen=True)
class Budget:
    """A credential's budget: its first window (`allowed_requests` per `interval`), any further
    windows (`more`; rate_limit.windows in the API), and a concurrency cap. A request takes a
    slot in every window.

        Budget(100, 10, more=(Window(250_000, 86_400),))   # HubSpot: 100 per 10 s and 250,000 a day
    """

    allowed_requests: int  # > 0
    interval: float  # seconds, > 0
    max_concurrent: int = 0  # 0 = no cap
    more: tuple[Window, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.max_concurrent, int) or self.max_concurrent < 0:
            raise ValueError(f"max_concurrent must be an integer >= 0, not {self.max_concurrent!r}")
        intervals = set()
        for i, w in enumerate(self.windows):
            where = "" if i == 0 else f"windows[{i - 1}]."  # as the JSON names `more`
            if not isinstance(w.allowed_requests, int) or w.allowed_requests <= 0:
                raise ValueError(f"{where}allowed_requests must be a positive integer, not {w.allowed_requests!r}")
            if not w.interval > 0:
                raise ValueError(f"{where}interval must be positive, not {w.interval!r}")
            if w.interval in intervals:
                raise ValueError(f"{where}interval {w.interval!r} is the interval of another window")
            intervals.add(w.interval)

    @property
    def windows(self) -> tuple[Window, ...]:
        return (Window(self.allowed_requests, self.interval), *self.more)


class BudgetExhausted(Exception):
    """The request's turn would come after its deadline; nothing was reserved."""

    def __init__(self, retry_after: float):
        self.retry_after = max(float(retry_after), 1e-3)
        super().__init__(f"rate budget exhausted; retry in {self.retry_after:.3f} s")


class PacerUnavailable(Exception):
    """The shared pacer (Redis) cannot be reached; the request must not be sent."""


class WindowState(NamedTuple):
    """One window as a request found it when it got its slot (for the RateLimit headers)."""

    limit: int
    interval: float
    remaining: int  # starts the window still allows once this one is counted
    reset: float  # seconds until the oldest start counted leaves the window (one more place)


@dataclass
class Permit:
    waited: float = 0.0  # seconds spent waiting for the turn (rate and concurrency)
    # The reservation, for `Pacer.started`: its start time in the key's log (in-process, loop
    # time) or its member (Redis).
    reserved: float | None = None
    token: str | None = None
    windows: tuple[WindowState, ...] = ()  # in the budget's order


@dataclass(frozen=True)
class WindowUse:
    limit: int
    interval: float
    used: int  # starts in the last `interval` seconds
    remaining: int  # starts a newcomer could make now (limit - used - reserved ones still to start)
    reset: float  # seconds until the oldest start counted leaves the window (0: none counted)


@dataclass(frozen=True)
class BudgetState:
    """A key's budget as `Pacer.state` sees it now."""

    windows: tuple[WindowUse, ...]
    waiting: int  # callers waiting for their turn (a reservation not yet due, or for a place)
    in_flight: int  # concurrency places held (0 when the budget has no cap)
    paused_for: float = 0.0  # seconds until the pause ends (0: not paused)
    pause_reason: str = ""


class Pacer(Protocol):
    def slot(self, key: str, budget: Budget, timeout: float | None) -> AbstractAsyncContextManager[Permit]: ...

    async def pause(self, key: str, seconds: float, reason: str = "") -> None:
        """Nothing of `key` starts for `seconds` (an upstream said so); `reason` is kept with the
        pause for `state` (a longer pause already in force wins, with its reason)."""
        ...

    async def started(self, key: str, budget: Budget, permit: Permit) -> None:
        """The request of `permit` (a slot of `key`) starts now. Called when it started later than
        its slot because it also waited for another budget (a sync read waits for its share, then
        for the credential's): the key's log then moves that reservation, and every later one, by
        the delay, as for a waiter woken late, so that the key's window holds for real starts."""
        ...

    async def state(self, key: str, budget: Budget) -> BudgetState:
        """Each window's use, the callers waiting and the pause, now (one read, nothing reserved)."""
        ...

    async def aclose(self) -> None: ...


def _check_margin(margin: float) -> float:
    if not margin >= 0:
        raise ValueError(f"the pacing margin must be >= 0 seconds, not {margin!r}")
    return float(margin)
