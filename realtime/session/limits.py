"""Per-connection limits: a token bucket for message rate, a sliding window for abuse."""

import time
from collections import deque


class TokenBucket:
    """Allows `rate` events per second on average and `burst` at once."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, *, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> bool:
        """Spend one token; False when the bucket is empty (the event is over the rate)."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class WindowCounter:
    """Counts events in a sliding window; `hit` says whether the limit is now exceeded. Its
    stamps are made on the first event (every session holds two counters that most never
    use, and an empty deque is over 600 bytes)."""

    __slots__ = ("limit", "window", "stamps")

    def __init__(self, *, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.stamps: deque[float] | None = None

    def hit(self) -> bool:
        """Record one event; True when more than `limit` fell within the last `window` seconds."""
        now = time.monotonic()
        if self.stamps is None:
            self.stamps = deque(maxlen=self.limit + 1)
        self.stamps.append(now)
        return len(self.stamps) > self.limit and now - self.stamps[0] <= self.window
