"""config.log_redaction: the last line of defence against credentials in logs."""

import io
import logging

import pytest

from config.log_redaction import REDACTED, RedactSecretsFilter, redact
from tests.conftest import forge

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"token {JWT} refused", f"token {REDACTED} refused"),
        (f"GET /ws/session/?token={JWT} 101", f"GET /ws/session/?token={REDACTED} 101"),
        ("GET /ws/session/?token=opaque123&x=1", f"GET /ws/session/?token={REDACTED}&x=1"),
        ("password=hunter2 user=alice", f"password={REDACTED} user=alice"),
        ("Refresh=abc", f"Refresh={REDACTED}"),
        ("ticket=t1&access=a1", f"ticket={REDACTED}&access={REDACTED}"),
        ("?access_token=a1&x=1", f"?access_token={REDACTED}&x=1"),
        ("new-password=p1 client_secret=s1", f"new-password={REDACTED} client_secret={REDACTED}"),
        ("nothing secret here", "nothing secret here"),
    ],
)
def test_redact_blanks_jwts_and_credential_values(text, expected):
    assert redact(text) == expected


def test_redact_blanks_a_jwt_signed_by_pyjwt_inside_quotes_or_json():
    raw = forge({"user_id": "1", "token_type": "access"})

    assert redact(f"token '{raw}'") == f"token '{REDACTED}'"
    assert redact(f'{{"token": "{raw}"}}') == f'{{"token": "{REDACTED}"}}'


@pytest.fixture
def logger_output() -> tuple[logging.Logger, io.StringIO]:
    """A logger writing through a handler that carries the filter, as settings configure it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecretsFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, stream
    logger.removeHandler(handler)
    logger.propagate = True


def test_a_token_in_the_message_arguments_is_blanked(logger_output):
    logger, stream = logger_output

    logger.warning("auth failed for %s at %s", JWT, "/ws/session/?token=abc")

    assert stream.getvalue() == (
        f"WARNING auth failed for {REDACTED} at /ws/session/?token={REDACTED}\n"
    )


def test_a_token_in_an_exception_traceback_is_blanked(logger_output):
    logger, stream = logger_output

    try:
        raise ValueError(f"bad token {JWT} in ?token=opaque123")
    except ValueError:
        logger.exception("request failed")

    output = stream.getvalue()
    assert output.startswith("ERROR request failed\nTraceback (most recent call last):\n")
    assert f"ValueError: bad token {REDACTED} in ?token={REDACTED}" in output
    assert JWT not in output and "opaque123" not in output


def test_a_clean_message_is_left_as_it_was(logger_output):
    logger, stream = logger_output

    logger.info("session opened: user_id=%s", 7)

    assert stream.getvalue() == "INFO session opened: user_id=7\n"


def test_every_configured_handler_carries_the_filter(settings):
    for name in ("console", "error_file"):
        assert "redact_secrets" in settings.LOGGING["handlers"][name]["filters"]
    assert settings.LOGGING["filters"]["redact_secrets"] == {
        "()": "config.log_redaction.RedactSecretsFilter"
    }
