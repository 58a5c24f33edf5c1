"""A logging filter that blanks anything shaped like a credential before it is written.

Redaction runs on the request path (daphne's access log runs on the reactor thread, and the
filter wherever a request logs), so every pattern here is linear in its input: a client
controls the text (a 16 KB URL, a long path), and a pattern that backtracks would stall
every socket of the worker. What is written is then bounded (`text_bound`), after
redaction, so a cut can never keep a secret the redaction would have blanked.
"""

import logging
import re

# A JWT: "eyJ" and three base64url parts. The parts are possessive (`*+`), and the two
# dotted parts optional: a lone "eyJ…" segment is consumed (and kept) in one step, so a run
# of "eyJeyJeyJ…" is scanned once, not once per "eyJ" as a backtracking pattern would.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*+(\.[A-Za-z0-9_-]*+\.[A-Za-z0-9_-]*+)?")
# Any parameter whose name contains one of these words: token=, access_token=, new-password=…
# A name only starts where a run of name characters starts (the lookbehind), and the name is
# atomic (`(?>…)`): each run is tried once, so "aaaa…" or "tokentoken…" without "=" stays
# linear (the unguarded pattern retried every position and keyword of the run: cubic).
_QUERY_SECRET = re.compile(
    r"(?i)(?<![\w-])((?>[\w-]*?(?:token|ticket|access|refresh|password|secret)[\w-]*+))"
    r"=[^&\s\"']++"
)
REDACTED = "[redacted]"
# The most of one logged text (a message, a request line) that is written; the middle of a
# longer one is replaced by a marker. A traceback gets more room: its frames are ours.
MAX_LOGGED_CHARS = 4096
MAX_TRACEBACK_CHARS = 16384


def _jwt_blank(match: re.Match[str]) -> str:
    return REDACTED if match.group(1) is not None else match.group(0)


def redact(text: str) -> str:
    """Return `text` with JWTs and credential query parameters replaced by a marker.
    Linear in len(text)."""
    text = _JWT.sub(_jwt_blank, text)
    return _QUERY_SECRET.sub(rf"\g<1>={REDACTED}", text)


def text_bound(text: str, limit: int = MAX_LOGGED_CHARS) -> str:
    """`text` if it has at most `limit` characters, else its head and tail around a marker
    saying how many characters were cut. Apply to text already redacted."""
    if len(text) <= limit:
        return text
    half = limit // 2
    cut = len(text) - 2 * half
    return f"{text[:half]}...[{cut} chars cut]...{text[-half:]}"


def log_text_clean(text: str, limit: int = MAX_LOGGED_CHARS) -> str:
    """Redacted, then bounded: what may be written of a text a client may have chosen."""
    return text_bound(redact(text), limit)


class RedactSecretsFilter(logging.Filter):
    """Last line of defence: no code should log a token, but if it does, it is blanked here.
    Also bounds each message (and traceback) to what `text_bound` keeps."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_switchboard_redacted", False):
            return True  # another handler's filter has cleaned it already
        message = record.getMessage()
        cleaned = log_text_clean(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            # Format the traceback now, redacted, so the handler does not format it again.
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = log_text_clean(formatted, MAX_TRACEBACK_CHARS)
        record._switchboard_redacted = True
        return True
