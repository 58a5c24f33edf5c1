"""Log record context (worker, session, user, client) and the two output formats."""

import logging
import os
import socket

CONTEXT_FIELDS = ("session_id", "user_id", "client_ip", "path")
WORKER = f"{socket.gethostname()}:{os.getpid()}"


class WorkerFilter(logging.Filter):
    """Stamp every record with the worker that wrote it (host:pid)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = WORKER if record.process == os.getpid() else f"pid {record.process}"
        return True


class ContextTextFormatter(logging.Formatter):
    """The human-readable format: the message, then `key=value` for each known context field."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = " ".join(
            f"{name}={getattr(record, name)}"
            for name in CONTEXT_FIELDS
            if getattr(record, name, None) is not None
        )
        if not context:
            return text
        head, sep, tail = text.partition("\n")  # keep a traceback below the first line
        return f"{head} {context}{sep}{tail}"
