"""The command line's pure parts: frames as lines for people, and usage errors (exit 64)."""

import pytest

from switchboard_client.cli import EXIT_USAGE, frame_format, main


@pytest.mark.parametrize(
    ("frame", "line"),
    [
        (
            {
                "type": "message",
                "channel": "r",
                "data": {"n": 1},
                "from": {"id": 1, "username": "al"},
            },
            '[r] al: {"n":1}',
        ),
        ({"type": "message", "channel": "r", "data": "hé", "from": None}, '[r] (server): "hé"'),
        ({"type": "error", "code": "forbidden", "message": "No", "id": 3}, "error forbidden: No"),
        ({"type": "pong", "id": 2}, "pong"),
        ({"type": "echo", "data": [1], "id": 1}, 'echo {"data":[1]}'),
        (
            {
                "type": "welcome",
                "message": "Authenticated!",
                "session_id": "s1",
                "user": {"id": 1, "username": "al"},
                "expires_at": "2026-11-23T20:35:59Z",
            },
            "welcome al (session s1, expires 2026-11-23T20:35:59Z)",
        ),
    ],
)
def test_frames_print_as_one_line_for_people(frame, line):
    assert frame_format(frame) == line


def test_a_session_without_username_is_a_usage_error(capsys):
    assert main(["--url", "http://127.0.0.1:1"]) == EXIT_USAGE
    assert capsys.readouterr().err.endswith("usage error: --username is required (or --echo)\n")


def test_an_unknown_option_is_a_usage_error_not_argparse_exit_2(capsys):
    assert main(["--password", "x"]) == EXIT_USAGE
    assert "usage error: unrecognized arguments: --password x" in capsys.readouterr().err
