"""Log record context: which worker wrote a record (for the JSON format's `worker` field)."""

import logging
import socket

HOSTNAME = socket.gethostname()


class WorkerFilter(logging.Filter):
    """Stamp every record with the worker that wrote it (host:pid)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = f"{HOSTNAME}:{record.process}"
        return True
