"""config.log_noise: Django's 4xx records and uvicorn's malformed-request lines are
rate-limited, everything else passes."""

import io
import logging

import pytest

from config.log_noise import ClientErrorRateFilter, is_client_error


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(name: str = "django.request", status: int | None = 404, msg: str = "Not Found: /x"):
    made = logging.LogRecord(name, logging.WARNING, __file__, 1, msg, None, None)
    if status is not None:
        made.status_code = status
    return made


@pytest.mark.parametrize(
    ("name", "status", "noise"),
    [
        ("django.request", 404, True),
        ("django.request", 405, True),
        ("django.security.DisallowedHost", 400, True),
        ("django.security.csrf", 403, True),
        ("django.request", 500, False),
        ("django.request", None, False),
        ("switchboard.security", 401, False),
        ("django.requestx", 404, False),
    ],
)
def test_only_4xx_records_of_djangos_request_and_security_loggers_are_noise(name, status, noise):
    assert is_client_error(record(name, status)) is noise


@pytest.mark.parametrize(
    ("msg", "noise"),
    [
        ("Invalid HTTP request received.", True),
        ("Unsupported upgrade request.", True),
        ("Exception in ASGI application\n", False),
        ("Application startup complete.", False),
    ],
)
def test_uvicorns_malformed_request_lines_are_noise_and_its_other_records_are_not(msg, noise):
    assert is_client_error(record("uvicorn.error", None, msg)) is noise


@pytest.fixture
def summaries() -> io.StringIO:
    """What the filter writes on switchboard.logging."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("switchboard.logging")
    logger.addHandler(handler)
    yield stream
    logger.removeHandler(handler)


def test_the_first_per_minute_pass_the_rest_are_summed_up_at_the_next_minute(summaries):
    clock = Clock()
    noise = ClientErrorRateFilter(per_minute=3, clock=clock)

    assert [noise.filter(record()) for _ in range(10)] == [True] * 3 + [False] * 7
    assert noise.filter(record("django.request", 500)) is True
    assert noise.filter(record("switchboard.security", None, "login failed")) is True
    assert summaries.getvalue() == ""

    clock.now += 60
    assert [noise.filter(record()) for _ in range(5)] == [True] * 3 + [False] * 2
    assert summaries.getvalue() == (
        "WARNING switchboard.logging suppressed 7 client-error records in a minute "
        "(Django's 4xx, malformed requests)\n"
    )


def test_a_quiet_minute_writes_no_summary(summaries):
    clock = Clock()
    noise = ClientErrorRateFilter(per_minute=3, clock=clock)
    assert [noise.filter(record()) for _ in range(3)] == [True] * 3

    clock.now += 61
    assert noise.filter(record()) is True
    assert summaries.getvalue() == ""


def test_one_record_through_two_handlers_is_counted_once():
    # As configured: one filter instance on the console and the LOG_FILE handler.
    noise = ClientErrorRateFilter(per_minute=2, clock=Clock())
    streams = [io.StringIO(), io.StringIO()]
    logger = logging.getLogger("django.request")
    saved = logger.handlers, logger.propagate, logger.level
    logger.handlers, logger.propagate = [], False
    logger.setLevel(logging.INFO)
    try:
        for stream in streams:
            handler = logging.StreamHandler(stream)
            handler.addFilter(noise)
            logger.addHandler(handler)
        for n in range(4):
            logger.warning("Not Found: /%d", n, extra={"status_code": 404})
    finally:
        logger.handlers, logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])
    assert [stream.getvalue() for stream in streams] == ["Not Found: /0\nNot Found: /1\n"] * 2
