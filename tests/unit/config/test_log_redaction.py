"""core.log_redaction: the last line of defence against credentials in logs."""

import io
import logging
import math
import random
import re
import time

import pytest

from core.log_redaction import (
    MAX_LOGGED_CHARS,
    REDACTED,
    RedactSecretsFilter,
    log_text_clean,
    redact,
    text_bound,
)
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
        "()": "core.log_redaction.RedactSecretsFilter"
    }


# -- linear time: a client chooses the text (a URL, a path) and redaction runs on the reactor --

# The patterns before they were made linear: the reference for what redaction blanks.
ORIGINAL_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
ORIGINAL_QUERY_SECRET = re.compile(
    r"(?i)([\w-]*(?:token|ticket|access|refresh|password|secret)[\w-]*)=[^&\s\"']+"
)
PIECES = ["eyJ", ".", "=", "&", "token", "TOKEN", "Access", "secret", "ticket", "a", "Z", "0"]
PIECES += ["-", "_", " ", "'", '"', "é", "[", "?", "/", "%", "\n"]
ADVERSARIAL = {
    "letters": "a",
    "token repeated": "token",
    "eyJ repeated": "eyJ",
    "eyJ and dots": "eyJ.",
    "dots": ".",
    "equals": "=",
    "ampersands": "&",
    "empty values": "a=&",
    "names and values": "token=a=",
    "words and hyphens": "password-",
    "unicode letters": "é",
}
# Each step: 16 times the text. Linear: about 16 times the time; quadratic: 256 times.
STEPS = [(64, 1024), (1024, 16384), (4096, 65536)]
GROWTH_LIMIT = 64


def original_redact(text: str) -> str:
    text = ORIGINAL_JWT.sub(REDACTED, text)
    return ORIGINAL_QUERY_SECRET.sub(lambda m: f"{m.group(1)}={REDACTED}", text)


def test_redact_blanks_exactly_what_the_original_patterns_blanked():
    rng = random.Random(12)  # fixed: the same 20,000 strings each run
    for _ in range(20_000):
        text = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 16)))
        assert redact(text) == original_redact(text), repr(text)


def redact_seconds(text: str) -> float:
    start = time.perf_counter()
    redact(text)
    return time.perf_counter() - start


def growth(unit: str, small: int, big: int) -> float:
    """How many times longer redact takes on `big` characters of `unit` than on `small`: the
    best of up to 7 timings of each, taken in turn (a burst of other work hits both), and
    done after 3 once under GROWTH_LIMIT."""
    best_small = best_big = math.inf
    for attempt in range(7):
        best_small = min(best_small, redact_seconds(unit * (small // len(unit))))
        best_big = min(best_big, redact_seconds(unit * (big // len(unit))))
        if attempt >= 2 and best_big / best_small < GROWTH_LIMIT:
            break
    return best_big / best_small


@pytest.mark.parametrize("unit", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_redact_time_grows_linearly_up_to_64_kb_of_adversarial_text(unit):
    # The first step is small, so that a superlinear pattern (the original ones took 8 s on
    # 16 KB of letters, and longer on "token" repeated) fails in seconds, not hours.
    for small, big in STEPS:
        assert growth(unit, small, big) < GROWTH_LIMIT, f"{small} -> {big} characters"


def test_a_long_message_is_cut_in_the_middle_and_says_how_much(logger_output):
    logger, stream = logger_output

    logger.warning("Not Found: %s", "/" + "a" * 65535)

    half = MAX_LOGGED_CHARS // 2
    message = "Not Found: /" + "a" * 65535
    cut = len(message) - 2 * half
    assert stream.getvalue() == (
        f"WARNING {message[:half]}...[{cut} chars cut]...{message[-half:]}\n"
    )


@pytest.mark.parametrize("offset", [-40, -10, 0, 10, 40])
def test_a_secret_across_the_cut_is_blanked_before_the_cut(offset):
    # The cut falls inside the JWT (or the `token=` value): redaction comes first, so no
    # piece of it is kept on either side of the marker.
    head = "x" * (MAX_LOGGED_CHARS // 2 + offset - len(JWT) // 2)
    for secret in (f" {JWT} ", f"&token=opaque-{JWT[40:]}&"):
        cleaned = log_text_clean(head + secret + "y" * 70_000)
        assert "chars cut]..." in cleaned
        assert len(cleaned) < MAX_LOGGED_CHARS + 40
        assert [part for part in JWT.split(".") if part[:12] in cleaned] == []
        assert "opaque" not in cleaned


def test_text_bound_keeps_a_short_text_whole():
    assert text_bound("GET /healthz 200") == "GET /healthz 200"
    assert text_bound("x" * MAX_LOGGED_CHARS) == "x" * MAX_LOGGED_CHARS
