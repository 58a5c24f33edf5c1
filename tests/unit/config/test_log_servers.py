"""config.log_servers: uvicorn's and granian's loggers, configured by the server before
LOGGING is applied, write through LOGGING's redacting handlers afterwards."""

import copy
import io
import logging
import logging.config
import re
import time
from collections.abc import Callable, Iterator

import pytest
import uvicorn
from django.conf import settings
from granian.log import DEFAULT_ACCESSLOG_FMT, LogLevels, configure_logging, log_request_builder

from config.log_servers import SERVER_LOGGERS, server_loggers
from core.log_redaction import REDACTED, RedactSecretsFilter

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


def line(level: str, logger: str, message: str, tail: str = "") -> re.Pattern[str]:
    """A console line in the text format: date, time, level, logger, [worker], the message
    (`tail`, a pattern, after it)."""
    return re.compile(rf"\S+ \S+ {level} {re.escape(logger)} \[[^]]+\] {re.escape(message)}{tail}")


def uvicorn_configures(**options) -> None:
    """What `uvicorn config.asgi:application …` does to logging before it imports the app."""
    uvicorn.Config(app="config.asgi:application", **options)  # its __init__ configures logging


def granian_configures() -> None:
    """What granian's worker process does to logging before it imports the app."""
    configure_logging(LogLevels.info, None, True)


@pytest.fixture
def console(tmp_path) -> Iterator[Callable[[], io.StringIO]]:
    """`apply()`: LOGGING as settings.py builds it in a process whose server configured logging
    first; returns the console handler's stream (the files in tmp_path). Restored after."""

    def apply() -> io.StringIO:
        stream = io.StringIO()
        config = copy.deepcopy(settings.LOGGING)
        # The entries settings.py has, as it would read them now (when it is imported).
        now = server_loggers()
        config["loggers"] |= {
            name: now[name] for name in SERVER_LOGGERS if name in config["loggers"]
        }
        config["handlers"]["console"]["stream"] = stream
        config["handlers"]["console"]["formatter"] = "text"
        for name in ("error_file", "security_file"):
            config["handlers"][name]["filename"] = str(tmp_path / f"{name}.log")
        logging.config.dictConfig(config)
        return stream

    yield apply
    logging.config.dictConfig(settings.LOGGING)


def handlers_reached(logger: logging.Logger) -> list[logging.Handler]:
    """Every handler a record logged on `logger` reaches (its own, then up while it propagates)."""
    reached: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        reached += current.handlers
        current = current.parent if current.propagate else None  # type: ignore[assignment]
    return reached


@pytest.mark.parametrize("server_configures", [uvicorn_configures, granian_configures])
def test_every_server_logger_reaches_only_redacting_handlers(console, server_configures):
    server_configures()
    console()

    for name in SERVER_LOGGERS:
        reached = handlers_reached(logging.getLogger(name))
        assert reached, name
        assert [
            handler
            for handler in reached
            if not any(isinstance(f, RedactSecretsFilter) for f in handler.filters)
        ] == [], name


def test_before_logging_is_applied_uvicorns_access_log_writes_the_token(capsys):
    uvicorn_configures()
    try:
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", f"/x/?token={JWT}", "1.1", 200
        )
        assert f"/x/?token={JWT}" in capsys.readouterr().out  # why this module exists
    finally:
        logging.config.dictConfig(settings.LOGGING)


def test_uvicorns_access_and_websocket_lines_are_redacted_and_keep_method_path_status(console):
    uvicorn_configures()
    stream = console()

    # As uvicorn's h11/httptools protocols and its websockets-sansio protocol log them.
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:5000",
        "GET",
        f"/api/auth/me/?token={JWT}&access=opaque",
        "1.1",
        401,
    )
    logging.getLogger("uvicorn.error").info(
        '%s - "WebSocket %s" [accepted]', "127.0.0.1:5001", "/ws/session/?ticket=t1"
    )

    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines
    access = '127.0.0.1:5000 - "GET /api/auth/me/?token=[redacted]&access=[redacted] HTTP/1.1" 401'
    assert line("INFO", "uvicorn.access", access).fullmatch(lines[0]), lines[0]
    websocket = '127.0.0.1:5001 - "WebSocket /ws/session/?ticket=[redacted]" [accepted]'
    assert line("INFO", "uvicorn.error", websocket).fullmatch(lines[1]), lines[1]


def test_granians_access_line_and_application_errors_are_redacted(console):
    granian_configures()
    stream = console()

    # granian's own access logger, fed what its ASGI wrapper gives it.
    log_request = log_request_builder(DEFAULT_ACCESSLOG_FMT)
    request = {"addr_remote": "127.0.0.1", "path": f"/api/tokens/{JWT}/", "qs": f"token={JWT}"}
    request |= {"method": "GET", "scheme": "http", "protocol": "HTTP/1.1"}
    log_request(time.time(), time.perf_counter(), request, 404)
    # granian's Rust side logs an application's exception on `_granian.utils`, traceback too.
    try:
        raise ValueError(f"bad token {JWT}")
    except ValueError:
        logging.getLogger("_granian.utils").error(
            "Application callable raised an exception", exc_info=True
        )

    output = stream.getvalue()
    assert JWT not in output and "c2lnbmF0dXJl" not in output
    access, error = output.split("\n", 1)
    request_line = '127.0.0.1 - "GET /api/tokens/[redacted]/ HTTP/1.1" 404'
    assert line(
        "INFO", "granian.access", "[", rf"[^]]+\] {re.escape(request_line)} \d+\.\d{{3}}"
    ).fullmatch(access), access
    assert line(
        "ERROR", "_granian.utils", "Application callable raised an exception\nTraceback"
    ).match(error), error
    assert error.endswith(f"ValueError: bad token {REDACTED}\n")


def test_uvicorns_access_log_left_off_by_its_option_stays_off(console):
    uvicorn_configures(access_log=False)  # --no-access-log
    stream = console()

    logging.getLogger("uvicorn.access").info('"GET / HTTP/1.1" 200')

    assert logging.getLogger("uvicorn.access").hasHandlers() is False  # uvicorn's own check
    assert stream.getvalue() == ""


def test_a_servers_log_level_is_kept(console):
    uvicorn_configures(log_level="warning")
    console()

    assert logging.getLogger("uvicorn.access").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("uvicorn.error").getEffectiveLevel() == logging.WARNING
