"""Log record context: which worker wrote a record (for the JSON format's `worker` field), and
the JSON format itself."""

import logging
import socket

from pythonjsonlogger.json import JsonFormatter as BaseJsonFormatter

HOSTNAME = socket.gethostname()


class WorkerFilter(logging.Filter):
    """Stamp every record with the worker that wrote it (host:pid)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = f"{HOSTNAME}:{record.process}"
        return True


class JsonFormatter(BaseJsonFormatter):
    """python-json-logger's formatter, writing the traceback that the redaction filter has
    prepared (`record.exc_text`): its own would format the exception again, secrets and all."""

    def format(self, record: logging.LogRecord) -> str:
        if not (record.exc_info and record.exc_text):
            return super().format(record)
        exc_info, record.exc_info = record.exc_info, None
        try:
            return super().format(record)
        finally:
            record.exc_info = exc_info
