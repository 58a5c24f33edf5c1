"""A logging filter that blanks anything shaped like a credential before it is written."""

import logging
import re

# A JWT (three base64url parts, the first two JSON objects), or a credential in a query string.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
# Any parameter whose name contains one of these words: token=, access_token=, new-password=…
_QUERY_SECRET = re.compile(
    r"(?i)([\w-]*(?:token|ticket|access|refresh|password|secret)[\w-]*)=[^&\s\"']+"
)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """Return `text` with JWTs and credential query parameters replaced by a marker."""
    text = _JWT.sub(REDACTED, text)
    return _QUERY_SECRET.sub(lambda m: f"{m.group(1)}={REDACTED}", text)


class RedactSecretsFilter(logging.Filter):
    """Last line of defence: no code should log a token, but if it does, it is blanked here."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            # Format the traceback now, redacted, so the handler does not format it again.
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(formatted)
        return True
