"""The ASGI servers' own loggers, written through LOGGING's handlers: redacted and bounded.

uvicorn and granian configure logging before they import the application, each with
handlers of its own that write what they are given: uvicorn's access log and its WebSocket
lines the whole URL (`?token=`, `?ticket=`), granian's access log the path (a token in a
path). LOGGING is applied when config.asgi is imported, after them, in the process that
serves the requests (granian's worker too): these entries take those handlers away and let
the records propagate to the root logger's handlers, which redact and bound every record as
they do Switchboard's own. (daphne writes its access log without logging:
realtime/server/daphne_adapter.py redacts it.)
"""

import logging
from typing import Any

# uvicorn: "uvicorn" (parent of uvicorn.error, where its WebSocket lines go, and
# uvicorn.asgi) and "uvicorn.access"; granian: "_granian" (its Python and Rust records,
# `_granian.utils` the application's exceptions) and "granian.access".
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "_granian", "granian.access")


def server_loggers() -> dict[str, dict[str, Any]]:
    """LOGGING's `loggers` entries for the servers' loggers: no handlers of their own, records
    propagated to the root's. Levels stay as the server set them (its `--log-level`), and an
    access log the server was told to leave off (uvicorn's `--no-access-log`: no handlers,
    not propagating) stays off."""
    entries = {}
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        left_off = name == "uvicorn.access" and not logger.handlers and not logger.propagate
        entries[name] = {"handlers": [], "propagate": not left_off}
    return entries
