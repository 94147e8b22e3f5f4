"""The one backoff: capped exponential with jitter, never past the caller's deadline."""

from __future__ import annotations

import pytest

from headwater.backoff import JITTER, backoff


@pytest.mark.parametrize("attempt, nominal", [(1, 0.1), (2, 0.2), (3, 0.4), (5, 1.6), (6, 2.0), (40, 2.0)])
def test_the_wait_doubles_per_attempt_up_to_the_cap_with_at_most_a_fifth_more(attempt, nominal):
    waits = [backoff(attempt, base=0.1, cap=2.0) for _ in range(200)]
    assert all(nominal <= wait <= nominal * (1 + JITTER) for wait in waits)
    assert len(set(waits)) > 1  # jittered: callers that failed together do not retry together


def test_a_wait_that_would_outlast_the_deadline_is_refused_rather_than_shortened():
    assert backoff(3, base=0.1, cap=2.0, remaining=0.3) is None
    assert backoff(1, base=3600, cap=3600, remaining=30) is None
    assert backoff(1, base=0.1, cap=2.0, remaining=5) is not None
