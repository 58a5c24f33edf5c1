"""The console's close-code words (closecodes.js) match the server's reason texts."""

import re
from pathlib import Path

from realtime.protocol.codes import CloseCode, ErrorCode

SOURCE = (Path(__file__).resolve().parents[3] / "console/static/console/closecodes.js").read_text()
JS_REASONS = {int(code): reason for code, reason in re.findall(r'(\d{4}): \[\s*"([^"]+)"', SOURCE)}


def test_every_close_code_the_server_sends_has_its_reason_text_in_the_console():
    assert {int(code): JS_REASONS.get(int(code)) for code in CloseCode} == {
        int(code): code.reason for code in CloseCode
    }


def test_the_console_also_words_1006_which_only_browsers_report():
    assert JS_REASONS[1006] == "connection lost"


def test_the_error_frames_that_precede_a_close_are_the_ones_the_console_leaves_to_the_close():
    # The server sends these just before closing 4001 or 4500-4502; the console says the close
    # once and not the error frame too. A new such code must be added on both sides.
    block = re.search(r"CLOSING_ERRORS = Object.freeze\(\[(.*?)\]\)", SOURCE, re.S).group(1)
    assert set(re.findall(r'"(\w+)"', block)) == {
        ErrorCode.UNAUTHORIZED,
        ErrorCode.TOKEN_EXPIRED,
        ErrorCode.SESSION_REVOKED,
        ErrorCode.TOO_MANY_SESSIONS,
    }
    assert {code for code in CloseCode if code == 4001 or code >= 4500} == {
        CloseCode.TOKEN_EXPIRED,
        CloseCode.UNAUTHORIZED,
        CloseCode.SESSION_REVOKED,
        CloseCode.TOO_MANY_SESSIONS,
    }
