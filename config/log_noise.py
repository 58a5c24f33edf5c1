"""Client-error noise kept out of the log files: Django's 4xx records and uvicorn's lines
about malformed requests, rate-limited.

Django writes a WARNING for every 4xx response ("Not Found: /x" on `django.request`) and an
ERROR with a traceback for every refused suspicious request (`django.security.*`, 400). Any
anonymous client can make thousands a minute; written to LOG_FILE they rotate the records
that matter out of it. daphne's access log already has a line per request, status included,
so these records say little more: a few a minute are written, and the rest are counted and
summed up in one line. uvicorn writes a WARNING for every request it cannot parse ("Invalid
HTTP request received.", answered 400), which any client can send as fast as it likes: the
same rule holds them.
"""

import logging
import threading
import time
from collections.abc import Callable

summary_log = logging.getLogger("switchboard.logging")

WINDOW = 60.0  # seconds
NOISY_LOGGERS = ("django.request", "django.security")
# A server's records of a request the client got wrong, by logger: each answered 400.
SERVER_CLIENT_ERRORS = {
    "uvicorn.error": frozenset({"Invalid HTTP request received.", "Unsupported upgrade request."}),
}


def is_client_error(record: logging.LogRecord) -> bool:
    """A 4xx record of Django's request or security loggers, or a server's record of a
    malformed request."""
    server_errors = SERVER_CLIENT_ERRORS.get(record.name)
    if server_errors is not None and isinstance(record.msg, str):
        return record.msg in server_errors
    status = getattr(record, "status_code", None)
    named = record.name in NOISY_LOGGERS or record.name.startswith("django.security.")
    return named and isinstance(status, int) and 400 <= status < 500


class ClientErrorRateFilter(logging.Filter):
    """Pass at most `per_minute` client-error records a minute (per process); drop the rest,
    and with the first record after that minute, write "suppressed N client-error records in a
    minute" on `switchboard.logging`. Other records always pass.

    Attached to several handlers, it decides once per record (the verdict rides on the
    record), so each handler writes the same records and nothing is counted twice.
    """

    def __init__(self, per_minute: int = 10, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.per_minute = per_minute
        self.clock = clock
        self.lock = threading.Lock()
        self.window_start = clock()
        self.passed = 0
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        verdict = getattr(record, "_switchboard_noise_verdict", None)
        if verdict is None:
            verdict, summary = self.verdict(record)
            record._switchboard_noise_verdict = verdict
            if summary:
                # Written outside the lock: it passes through this filter again.
                summary_log.warning(
                    "suppressed %d client-error records in a minute (Django's 4xx, malformed "
                    "requests)",
                    summary,
                )
        return verdict

    def verdict(self, record: logging.LogRecord) -> tuple[bool, int]:
        """(whether `record` is written, how many were suppressed in a window just ended)."""
        with self.lock:
            now = self.clock()
            summary = 0
            if now - self.window_start >= WINDOW:
                summary, self.suppressed, self.passed = self.suppressed, 0, 0
                self.window_start = now
            if not is_client_error(record):
                return True, summary
            if self.passed < self.per_minute:
                self.passed += 1
                return True, summary
            self.suppressed += 1
            return False, summary
