"""RecentCalls, what the console's recent calls and hourly charts read: bounded, per organisation,
never a query string, counts per credential and minute for an hour (a clock of the test's own)."""

from __future__ import annotations

from headwater.recent import RecentCalls


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):  # a whole minute
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(recent: RecentCalls, org="o1", credential="c1", url="https://api.example.com/v1/items", waited=0.0):
    recent.record(org_id=org, credential_id=credential, method="GET", url=url, status=200, waited=waited, upstream=0.05)


def test_a_call_keeps_its_host_and_path_but_never_its_query_string_or_userinfo():
    recent = RecentCalls()

    record(recent, url="https://user:pw@api.example.com:8443/v1/items?api_key=secret&q=1")

    (call,) = recent.calls("o1")
    assert (call.method, call.host, call.path, call.status, call.upstream_ms) == (
        "GET", "api.example.com:8443", "/v1/items", 200, 50.0)
    assert "secret" not in repr(call) and "pw" not in repr(call)


def test_calls_are_the_organisations_own_newest_first_and_only_the_last_few_are_kept():
    recent = RecentCalls(size=3)
    for i in range(4):
        record(recent, url=f"https://api.example.com/{i}")
    record(recent, org="o2", url="https://api.example.com/theirs")

    assert [c.path for c in recent.calls("o1")] == ["/3", "/2"]  # /0 and /1 pushed out of the 3 kept
    assert [c.path for c in recent.calls("o2")] == ["/theirs"]
    assert recent.calls("o1", credential_id="c2") == []


def test_each_minute_of_the_last_hour_counts_requests_and_those_that_waited():
    clock = Clock()
    recent = RecentCalls(clock=clock)
    record(recent)
    record(recent, waited=0.2)
    clock.now += 125  # two minutes on
    record(recent, waited=0.0005)  # under a millisecond: not a wait

    minutes = recent.minutes("c1")

    assert len(minutes) == 60 and minutes[-1].start == clock.now // 60 * 60
    assert [(m.requests, m.waits) for m in minutes[-3:]] == [(2, 1), (0, 0), (1, 0)]
    assert sum(m.requests for m in recent.minutes("c2")) == 0


def test_a_credential_silent_for_an_hour_is_forgotten():
    clock = Clock()
    recent = RecentCalls(clock=clock)
    record(recent, credential="old")
    clock.now += 61 * 60

    record(recent, credential="new")

    assert "old" not in recent._counts
    assert sum(m.requests for m in recent.minutes("old")) == 0
