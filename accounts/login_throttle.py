"""Failed-login limits per username and per client IP, shared by every worker.

Counted by `core.rate_limits` (the `limits` library): in Redis when REDIS_URL is set, else in
process memory. Each attempt takes its place in both allowances before the password is
checked, with limits' `hit` (on Redis one atomic script), so parallel attempts on any number
of workers cannot all pass a check made before any is counted; a good password gives back
what it took. When Redis cannot answer, the same allowances are counted in this worker
(logins keep working, never unthrottled), and the security log says so once.
"""

import math
from dataclasses import dataclass

from django.conf import settings
from limits import RateLimitItem, parse

from accounts.identity import username_key
from core.once import once
from core.rate_limits import SharedLimiter


@dataclass(frozen=True)
class LoginThrottle:
    limiter: SharedLimiter
    per_username: RateLimitItem
    per_ip: RateLimitItem

    def _username(self, username: str) -> tuple[RateLimitItem, tuple[str, ...]]:
        # Every spelling of one name shares its allowance ('Alice', 'ALICE', fullwidth…).
        return self.per_username, ("login-failures", "username", username_key(username))

    def _ip(self, ip: str) -> tuple[RateLimitItem, tuple[str, ...]]:
        return self.per_ip, ("login-failures", "ip", ip)

    def _wait(self, item: RateLimitItem, ids: tuple[str, ...]) -> int:
        """Seconds until the allowance `item` of `ids` has room again (at least 1)."""
        return max(1, math.ceil(self.limiter.reset_in(item, *ids)))

    def attempt_take(self, *, username: str, ip: str) -> int | None:
        """Take one attempt from the IP's allowance, then from the username's, before the
        password is checked. None when both had room; otherwise the seconds to wait, and
        nothing stays taken (a refused attempt checks no password, so it costs nothing)."""
        (ip_item, ip_ids), (user_item, user_ids) = self._ip(ip), self._username(username)
        if not self.limiter.hit(ip_item, *ip_ids):
            return self._wait(ip_item, ip_ids)
        if not self.limiter.hit(user_item, *user_ids):
            self.limiter.give_back(ip_item, *ip_ids)
            return self._wait(user_item, user_ids)
        return None

    def attempt_succeeded(self, *, username: str, ip: str) -> None:
        """The password was right: forget the username's failures and give back the IP's
        attempt (the IP's allowance counts failures only)."""
        (ip_item, ip_ids), (user_item, user_ids) = self._ip(ip), self._username(username)
        self.limiter.clear(user_item, *user_ids)
        self.limiter.give_back(ip_item, *ip_ids)


@once
def login_throttle() -> LoginThrottle:
    """The process-wide throttle, built from settings on first use."""
    return LoginThrottle(
        limiter=SharedLimiter("login_rate", shared=bool(settings.REDIS_URL)),
        per_username=parse(settings.LOGIN_FAILURES_PER_USERNAME),
        per_ip=parse(settings.LOGIN_FAILURES_PER_IP),
    )
