"""The console's close-code words (closecodes.js) match the server's reason texts."""

import re
from pathlib import Path

from realtime.protocol import CLOSE_REASONS

SOURCE = (Path(__file__).resolve().parents[3] / "console/static/console/closecodes.js").read_text()
JS_REASONS = {int(code): reason for code, reason in re.findall(r'(\d{4}): \[\s*"([^"]+)"', SOURCE)}


def test_every_close_code_the_server_sends_has_its_reason_text_in_the_console():
    assert {code: JS_REASONS.get(int(code)) for code in CLOSE_REASONS} == {
        code: reason for code, reason in CLOSE_REASONS.items()
    }


def test_the_console_also_words_1006_which_only_browsers_report():
    assert JS_REASONS[1006] == "connection lost"
