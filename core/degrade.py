"""What a security check does when Redis cannot answer: said once in the log, counted always.

A check that needs Redis never stops checking (docs/SECURITY.md, "When Redis cannot answer"):
it refuses, or it falls back to a stricter local rule. `Degradation` is how each check tells
the operator which, and when it is back to normal.
"""

import logging

from prometheus_client import Counter

from core.redis import redis_error_reason

# The checks that need Redis, and what each answers without it (the metric's label values).
CHECKS = frozenset(
    {"connect_rate", "ticket_rate", "login_rate", "revoked_tokens", "tickets", "session_cap"}
)
ANSWERS = frozenset({"local_rule", "refused"})

REDIS_DEGRADED = Counter(
    "switchboard_redis_degraded",
    "Security checks answered without Redis (it could not answer): by a local rule, or refused.",
    ["check", "answer"],
)

logger = logging.getLogger("switchboard.security")


class Degradation:
    """One check's state: normal (Redis answers) or degraded. The change each way is logged
    once; every degraded answer is counted."""

    def __init__(self, check: str, *, answer: str, rule: str) -> None:
        assert check in CHECKS and answer in ANSWERS
        self.check = check
        self.answer = answer
        self.rule = rule  # what happens meanwhile, for the log line
        self.degraded = False

    def fell_back(self, error: BaseException) -> None:
        """Redis could not answer this time (`error`)."""
        REDIS_DEGRADED.labels(self.check, self.answer).inc()
        if not self.degraded:
            self.degraded = True
            logger.warning(
                "%s: Redis cannot answer (%s); %s until it can",
                self.check,
                redis_error_reason(error),
                self.rule,
            )

    def answered(self) -> None:
        """Redis answered again."""
        if self.degraded:
            self.degraded = False
            logger.warning("%s: Redis answers again; checked across workers", self.check)
