"""LOG_FORMAT=json: one JSON object per line with the documented fields."""

import io
import json
import logging
import logging.config

from django.conf import settings

from core.log_redaction import REDACTED, RedactSecretsFilter

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


def test_the_json_format_writes_one_object_per_line_with_context_fields():
    stream = io.StringIO()
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": settings.LOGGING["filters"],
        "formatters": {"json": settings.LOGGING["formatters"]["json"]},
        "handlers": {
            "test": {
                "class": "logging.StreamHandler",
                "stream": stream,
                "formatter": "json",
                "filters": ["worker", "redact_secrets"],
            }
        },
        "loggers": {
            "tests.json_format": {"handlers": ["test"], "level": "INFO", "propagate": False}
        },
    }
    logging.config.dictConfig(config)
    logging.getLogger("tests.json_format").warning(
        "session closed: %s", "4501", extra={"session_id": "s-1", "user_id": 7, "client_ip": "::1"}
    )
    line = stream.getvalue().strip()
    assert "\n" not in line
    record = json.loads(line)
    assert record["event"] == "session closed: 4501"
    assert (record["level"], record["logger"]) == ("WARNING", "tests.json_format")
    assert (record["session_id"], record["user_id"], record["client_ip"]) == ("s-1", 7, "::1")
    assert record["worker"].endswith(f":{__import__('os').getpid()}")
    assert record["timestamp"].startswith("20")


def test_the_json_format_writes_the_redacted_traceback():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        logging.config.DictConfigurator({}).configure_formatter(
            dict(settings.LOGGING["formatters"]["json"])
        )
    )
    handler.addFilter(RedactSecretsFilter())
    logger = logging.getLogger("tests.json_traceback")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise ValueError(f"bad token {JWT}")
        except ValueError:
            logger.exception("request failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True

    record = json.loads(stream.getvalue())
    assert record["event"] == "request failed"
    assert record["exc_info"].startswith("Traceback (most recent call last):\n")
    assert record["exc_info"].endswith(f"ValueError: bad token {REDACTED}")
    assert JWT.split(".")[2] not in stream.getvalue()
