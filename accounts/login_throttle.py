"""Failed-login limits per username and per client IP, shared by every worker.

Storage is the `limits` library: Redis when REDIS_URL is set, process memory otherwise.
When Redis is unreachable the throttle fails open (logins keep working) and says so in
the log: refusing every login during a cache outage would lock everyone out.
"""

import logging
import math
import time
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from limits import RateLimitItem, parse, storage, strategies

logger = logging.getLogger("switchboard.security")


@dataclass(frozen=True)
class LoginThrottle:
    limiter: strategies.RateLimiter
    per_username: RateLimitItem
    per_ip: RateLimitItem

    def _keys(self, *, username: str, ip: str) -> list[tuple[RateLimitItem, tuple[str, ...]]]:
        return [
            (self.per_username, ("login-failures", "username", username.casefold())),
            (self.per_ip, ("login-failures", "ip", ip)),
        ]

    def retry_after(self, *, username: str, ip: str) -> int | None:
        """Seconds until a login may be tried again, or None when it may be tried now."""
        try:
            waits = [
                self.limiter.get_window_stats(item, *ids).reset_time - time.time()
                for item, ids in self._keys(username=username, ip=ip)
                if not self.limiter.test(item, *ids)
            ]
        except Exception:
            logger.exception("login throttle storage unreachable; failing open")
            return None
        return max(1, math.ceil(max(waits))) if waits else None

    def reserve(self, *, username: str, ip: str) -> bool:
        """Take one attempt from the username's allowance before checking the password: one
        atomic step, so parallel attempts cannot all pass a check made before any is counted.
        False when none is left. A good login gives it back (`success`)."""
        item, ids = self._keys(username=username, ip=ip)[0]
        try:
            return self.limiter.hit(item, *ids)
        except Exception:
            logger.exception("login throttle storage unreachable; failing open")
            return True

    def failure(self, *, username: str, ip: str) -> None:
        """Count one failed login against the IP (the username's attempt is already taken)."""
        try:
            item, ids = self._keys(username=username, ip=ip)[1]
            self.limiter.hit(item, *ids)
        except Exception:
            logger.exception("login throttle storage unreachable; failure not counted")

    def success(self, *, username: str, ip: str) -> None:
        """Forget the username's failures after a good login (the IP's count stays)."""
        try:
            item, ids = self._keys(username=username, ip=ip)[0]
            self.limiter.clear(item, *ids)
        except Exception:
            logger.exception("login throttle storage unreachable")


@cache
def login_throttle() -> LoginThrottle:
    """The process-wide throttle, built from settings on first use."""
    if settings.REDIS_URL:
        store = storage.storage_from_string(
            settings.REDIS_URL,
            socket_timeout=settings.REDIS_CONNECT_TIMEOUT,
            socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT,
        )
    else:
        store = storage.storage_from_string("memory://")
    return LoginThrottle(
        limiter=strategies.MovingWindowRateLimiter(store),
        per_username=parse(settings.LOGIN_FAILURES_PER_USERNAME),
        per_ip=parse(settings.LOGIN_FAILURES_PER_IP),
    )
