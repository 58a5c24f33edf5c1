"""The accounts' Prometheus metrics (served at /metrics by `operations`). Every label value
comes from a fixed set, never from user input."""

from prometheus_client import Counter

LOGIN_OUTCOMES = frozenset({"success", "failure", "throttled"})

LOGINS = Counter("switchboard_logins", "REST logins by outcome.", ["outcome"])
