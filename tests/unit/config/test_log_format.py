"""LOG_FORMAT=json: one JSON object per line with the documented fields."""

import io
import json
import logging
import logging.config

from django.conf import settings


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
