"""Full-jitter backoff: bounds, growth, the cap, and bad arguments."""

import pytest

from switchboard_client.backoff import Backoff, backoff_delay


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(0, 0.5), (1, 1.0), (2, 2.0), (5, 16.0), (6, 30.0), (40, 30.0)]
)
def test_the_delay_ceiling_doubles_per_attempt_up_to_the_cap(attempt, ceiling):
    backoff = Backoff(base=0.5, cap=30.0)
    assert backoff.delay(attempt=attempt, rand=lambda: 1.0) == ceiling
    assert backoff.delay(attempt=attempt, rand=lambda: 0.0) == 0.0
    assert backoff.delay(attempt=attempt, rand=lambda: 0.5) == ceiling / 2


def test_full_jitter_spreads_delays_over_the_whole_range_and_never_past_the_ceiling():
    delays = [backoff_delay(attempt=3, base=1.0, cap=60.0) for _ in range(2000)]
    assert all(0.0 <= d < 8.0 for d in delays)
    # Uniform on [0, 8): each quarter of the range gets a fair share, and some are near 0.
    quarters = [sum(1 for d in delays if q * 2 <= d < (q + 1) * 2) for q in range(4)]
    assert all(350 < n < 650 for n in quarters), quarters
    assert min(delays) < 0.1


def test_a_huge_attempt_number_stays_at_the_cap_without_overflow():
    assert backoff_delay(attempt=10_000, base=0.5, cap=30.0, rand=lambda: 1.0) == 30.0


def test_a_negative_attempt_is_refused():
    with pytest.raises(ValueError, match="attempt must be 0 or more, got -1"):
        backoff_delay(attempt=-1, base=0.5, cap=30.0)


@pytest.mark.parametrize(("base", "cap"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_a_backoff_needs_a_positive_base_not_above_the_cap(base, cap):
    with pytest.raises(ValueError, match=f"Backoff needs 0 < base <= cap, got base={base}"):
        Backoff(base=base, cap=cap)
