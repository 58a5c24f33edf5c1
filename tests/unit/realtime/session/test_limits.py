"""realtime.session.limits: the per-connection token bucket and the sliding-window counter."""

import pytest

from realtime.session import limits
from realtime.session.limits import TokenBucket, WindowCounter


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(limits.time, "monotonic", clock)
    return clock


def test_a_bucket_allows_its_burst_at_once_then_refuses(clock):
    bucket = TokenBucket(rate=2, burst=3)

    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_a_bucket_refills_at_its_rate(clock):
    bucket = TokenBucket(rate=2, burst=3)
    for _ in range(3):
        bucket.take()

    clock.now += 0.49
    assert bucket.take() is False
    clock.now += 0.01  # 0.5 s at 2/s: one token
    assert bucket.take() is True
    assert bucket.take() is False


def test_a_bucket_never_holds_more_than_its_burst(clock):
    bucket = TokenBucket(rate=100, burst=2)

    clock.now += 3600

    assert [bucket.take() for _ in range(3)] == [True, True, False]


def test_a_refused_take_does_not_spend_anything(clock):
    bucket = TokenBucket(rate=1, burst=1)
    bucket.take()
    for _ in range(10):
        assert bucket.take() is False

    clock.now += 1.0

    assert bucket.take() is True


def test_a_steady_rate_at_the_limit_is_never_refused(clock):
    bucket = TokenBucket(rate=10, burst=1)

    allowed = []
    for _ in range(50):
        allowed.append(bucket.take())
        clock.now += 0.1

    assert all(allowed)


def test_a_window_counter_trips_only_above_its_limit(clock):
    counter = WindowCounter(limit=3, window=10)

    assert [counter.hit() for _ in range(4)] == [False, False, False, True]


def test_a_window_counter_forgets_events_older_than_its_window(clock):
    counter = WindowCounter(limit=2, window=10)
    counter.hit()
    counter.hit()

    clock.now += 10.01

    assert counter.hit() is False


def test_a_window_counter_counts_events_exactly_at_the_window_edge(clock):
    counter = WindowCounter(limit=2, window=10)
    counter.hit()
    clock.now += 5
    counter.hit()
    clock.now += 5  # the first hit is exactly `window` old

    assert counter.hit() is True


def test_a_window_counter_slides(clock):
    counter = WindowCounter(limit=2, window=10)
    counter.hit()  # t=0
    clock.now += 6
    counter.hit()  # t=6
    clock.now += 6
    assert counter.hit() is False  # t=12: the t=0 hit has left the window
    clock.now += 1
    assert counter.hit() is True  # t=13: t=6, t=12, t=13
