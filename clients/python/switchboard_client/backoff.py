"""Reconnect delays: exponential backoff with full jitter."""

import random
from collections.abc import Callable
from dataclasses import dataclass

# 2**62 already dwarfs any cap; a larger exponent would only risk a float overflow.
_MAX_EXPONENT = 62


@dataclass(frozen=True)
class Backoff:
    """Delays of 0 up to `base` * 2**attempt seconds, never above `cap` (full jitter)."""

    base: float = 0.5
    cap: float = 30.0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise ValueError(f"Backoff needs 0 < base <= cap, got base={self.base} cap={self.cap}")

    def delay(self, *, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """The wait before reconnect attempt `attempt` (0 for the first after a drop)."""
        return backoff_delay(attempt=attempt, base=self.base, cap=self.cap, rand=rand)


def backoff_delay(
    *, attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt)). Spreads the reconnects of
    many clients dropped at once (a worker restart) instead of bunching them."""
    if attempt < 0:
        raise ValueError(f"attempt must be 0 or more, got {attempt}")
    ceiling: float = min(cap, base * 2 ** min(attempt, _MAX_EXPONENT))
    return rand() * ceiling
