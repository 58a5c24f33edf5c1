"""Failed-login limits per username and per client IP, shared by every worker.

Storage is the `limits` library: Redis when REDIS_URL is set, process memory otherwise.
Each attempt takes its place in both allowances before the password is checked, with
limits' `hit` (on Redis one atomic script), so parallel attempts on any number of workers
cannot all pass a check made before any is counted; a good password gives back what it took.
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

from accounts.identity import username_key
from accounts.limits_compat import moving_window_give_back

logger = logging.getLogger("switchboard.security")


@dataclass(frozen=True)
class LoginThrottle:
    limiter: strategies.MovingWindowRateLimiter
    per_username: RateLimitItem
    per_ip: RateLimitItem

    def _username(self, username: str) -> tuple[RateLimitItem, tuple[str, ...]]:
        # Every spelling of one name shares its allowance ('Alice', 'ALICE', fullwidth…).
        return self.per_username, ("login-failures", "username", username_key(username))

    def _ip(self, ip: str) -> tuple[RateLimitItem, tuple[str, ...]]:
        return self.per_ip, ("login-failures", "ip", ip)

    def _wait(self, item: RateLimitItem, ids: tuple[str, ...]) -> int:
        """Seconds until the allowance `item` of `ids` has room again (at least 1)."""
        reset = self.limiter.get_window_stats(item, *ids).reset_time
        return max(1, math.ceil(reset - time.time()))

    def attempt_take(self, *, username: str, ip: str) -> int | None:
        """Take one attempt from the IP's allowance, then from the username's, before the
        password is checked. None when both had room; otherwise the seconds to wait, and
        nothing stays taken (a refused attempt checks no password, so it costs nothing)."""
        (ip_item, ip_ids), (user_item, user_ids) = self._ip(ip), self._username(username)
        try:
            if not self.limiter.hit(ip_item, *ip_ids):
                return self._wait(ip_item, ip_ids)
            if not self.limiter.hit(user_item, *user_ids):
                self._give_back(ip_item, ip_ids)
                return self._wait(user_item, user_ids)
        except Exception:
            logger.exception("login throttle storage unreachable; failing open")
        return None

    def attempt_succeeded(self, *, username: str, ip: str) -> None:
        """The password was right: forget the username's failures and give back the IP's
        attempt (the IP's allowance counts failures only)."""
        (ip_item, ip_ids), (user_item, user_ids) = self._ip(ip), self._username(username)
        try:
            self.limiter.clear(user_item, *user_ids)
            self._give_back(ip_item, ip_ids)
        except Exception:
            logger.exception("login throttle storage unreachable")

    def _give_back(self, item: RateLimitItem, ids: tuple[str, ...]) -> None:
        moving_window_give_back(storage=self.limiter.storage, key=item.key_for(*ids))


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
