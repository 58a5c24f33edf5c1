"""The LOGGING setting's files: security events in SECURITY_LOG_FILE (and LOG_FILE), Django's
4xx noise rate-limited, and nothing in the process ever rotating the security file."""

import copy
import logging
import logging.config
import re
from pathlib import Path

import pytest
from django.conf import settings

SECURITY_LINE = re.compile(
    r"\S+ \S+ WARNING switchboard\.security \[[^]]+\] login failed: username='u' client=::1"
)


@pytest.fixture
def log_files(tmp_path) -> dict[str, Path]:
    """settings.LOGGING applied with its two files in tmp_path; restored afterwards."""
    files = {"error_file": tmp_path / "errors.log", "security_file": tmp_path / "security.log"}
    config = copy.deepcopy(settings.LOGGING)
    for name, path in files.items():
        config["handlers"][name]["filename"] = str(path)
    logging.config.dictConfig(config)
    yield files
    logging.config.dictConfig(settings.LOGGING)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_the_security_file_defaults_to_security_log_beside_log_file():
    assert settings.SECURITY_LOG_FILE == settings.LOG_FILE.parent / "security.log"
    handler = settings.LOGGING["handlers"]["security_file"]
    assert handler["class"] == "logging.handlers.WatchedFileHandler"  # never rotates itself
    assert handler["filename"] == str(settings.SECURITY_LOG_FILE)
    assert settings.LOGGING["loggers"]["switchboard.security"]["handlers"] == ["security_file"]


def test_a_security_event_is_in_both_files_and_nothing_else_is_in_the_security_file(log_files):
    logging.getLogger("switchboard.security").warning("login failed: username='u' client=::1")
    logging.getLogger("switchboard.realtime").warning("room fan-out ignored an event")
    for n in range(50):
        logging.getLogger("django.request").warning(
            "Not Found: /x/%d", n, extra={"status_code": 404}
        )

    security = lines(log_files["security_file"])
    assert len(security) == 1
    assert SECURITY_LINE.fullmatch(security[0]), security
    errors = lines(log_files["error_file"])
    assert len([line for line in errors if "login failed: username='u'" in line]) == 1
    assert len([line for line in errors if "room fan-out ignored an event" in line]) == 1
    not_found = [line for line in errors if " Not Found: /x/" in line]
    assert [line.rsplit(" ", 1)[1] for line in not_found] == [
        f"/x/{n}" for n in range(settings.LOG_4XX_PER_MINUTE)
    ]


def test_a_security_file_moved_away_by_logrotate_is_reopened(log_files):
    security = logging.getLogger("switchboard.security")
    security.warning("before the rotation")
    log_files["security_file"].rename(f"{log_files['security_file']}.1")

    security.warning("after the rotation")

    rotated = Path(f"{log_files['security_file']}.1")
    assert [line.rsplit("] ", 1)[1] for line in lines(rotated)] == ["before the rotation"]
    assert [line.rsplit("] ", 1)[1] for line in lines(log_files["security_file"])] == [
        "after the rotation"
    ]
