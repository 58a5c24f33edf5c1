"""core.rate_limits: counted in Redis and in this worker all along; the worker's count decides
when Redis cannot answer, and a fall-back never starts a fresh allowance."""

import logging

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from core.rate_limits import SharedLimiter

FIVE = RateLimitItemPerMinute(5)


class Broken:
    """A shared limiter whose Redis is gone."""

    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise ConnectionError("storage down")

        return fail


def limiter_with(shared) -> SharedLimiter:
    limiter = SharedLimiter("login_rate", shared=False)
    limiter._shared = shared
    return limiter


def test_what_this_worker_counted_still_counts_when_redis_fails():
    limiter = limiter_with(MovingWindowRateLimiter(MemoryStorage()))
    assert [limiter.hit(FIVE, "ip", "a") for _ in range(4)] == [True] * 4

    limiter._shared = Broken()

    assert [limiter.hit(FIVE, "ip", "a") for _ in range(2)] == [True, False]


def test_while_redis_answers_the_shared_count_decides(caplog):
    shared = MovingWindowRateLimiter(MemoryStorage())
    for _ in range(5):  # other workers' attempts
        shared.hit(FIVE, "ip", "a")
    limiter = limiter_with(shared)

    assert limiter.hit(FIVE, "ip", "a") is False
    assert limiter.test(FIVE, "ip", "a") is False


def test_a_give_back_reaches_both_counts(caplog):
    caplog.set_level(logging.WARNING, logger="switchboard.security")
    shared = MovingWindowRateLimiter(MemoryStorage())
    limiter = limiter_with(shared)
    for _ in range(5):
        assert limiter.hit(FIVE, "ip", "a")

    limiter.give_back(FIVE, "ip", "a")

    assert shared.get_window_stats(FIVE, "ip", "a").remaining == 1
    limiter._shared = Broken()
    assert limiter.hit(FIVE, "ip", "a") is True  # the local count was given back too
    assert limiter.hit(FIVE, "ip", "a") is False
    assert [r.getMessage() for r in caplog.records] == [
        "login_rate: Redis cannot answer (ConnectionError); counted in this worker only "
        "until it can"
    ]
