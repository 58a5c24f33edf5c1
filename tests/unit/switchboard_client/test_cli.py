"""The command line: frames as lines for people, --help, usage errors (exit 64), quiet logging,
and the first connect's failures in words with their exit codes (against a real local HTTP
server that refuses logins, and a port nobody listens on)."""

import io
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from switchboard_client.cli import (
    EXIT_CLOSED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    failure_report,
    frame_format,
    main,
)
from switchboard_client.errors import (
    HandshakeRefused,
    LoginRefused,
    RestError,
    ServerUnreachable,
    SessionRevoked,
    TooManySessions,
    unreachable_why,
)

ROOT = Path(__file__).resolve().parents[3]


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
        (
            {
                "type": "message",
                "channel": "chat.r",
                "data": 2,
                "from": {"id": 1, "username": "al"},
                "offset": 7,
                "epoch": "e1",
            },
            "[chat.r] #7 al: 2",
        ),
        (
            {
                "type": "history",
                "channel": "chat.r",
                "messages": [
                    {"type": "message", "channel": "chat.r", "data": d, "from": None, "offset": n}
                    for n, d in ((1, "a"), (2, "b"))
                ],
                "offset": 2,
                "epoch": "e1",
                "id": 4,
            },
            "history [chat.r] 2 message(s), up to #2 (epoch e1)\n"
            '  [chat.r] #1 (server): "a"\n'
            '  [chat.r] #2 (server): "b"',
        ),
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


# -- --help, logging, and the first connect's failures ------------------------------------

HELP_TAIL = """\
commands at the prompt:
  /ping             send a ping and print the round-trip time
  /sub ROOM         subscribe to ROOM; its messages are printed as they arrive
  /unsub ROOM       leave ROOM
  /pub ROOM DATA    publish DATA to ROOM (as JSON when it parses, else as a string)
  /presence ROOM    print who is subscribed to ROOM now, on every worker
  /history ROOM     print the messages ROOM's history keeps (namespaces with history)
  /quit             wait for the replies still due, then exit (so does the end of input)
  {...} or [...]    a JSON object or array is sent as it is
  any other line    sent as an echo: {"type":"echo","data":LINE}

with --echo, every line is sent to /ws/echo/ as text, and /quit ends.

the password: the first line of stdin with --password-stdin, else $SWITCHBOARD_PASSWORD, else a
prompt on a terminal (there is no --password option: it would land in shell history and ps).

exit codes:
  0   end of input or /quit
  1   could not connect or log in for a reason that may pass: server unreachable,
      HTTP 403/429/5xx, gave up reconnecting
  2   refused or ended for good: bad username or password, a close 4500-4999,
      or another close that is not retried
  64  usage error: a missing --username, no password, an unknown option
"""


def test_help_lists_the_defaults_every_interactive_command_and_the_exit_codes(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["--help"]) == EXIT_OK
    out = capsys.readouterr().out
    options = out[out.index("options:") : out.index("commands at the prompt:")].splitlines()
    assert options == [
        "options:",
        "  -h, --help           show this help message and exit",
        "  --url URL            the site's base URL (default: http://127.0.0.1:8000)",
        "  --username USERNAME  log in as this user (not needed with --echo)",
        "  --password-stdin     read the password from the first line of stdin (else "
        "$SWITCHBOARD_PASSWORD,",
        "                       else a prompt)",
        "  --echo               talk to the anonymous /ws/echo/ instead (no login)",
        "  --json               print frames raw, one per line",
        "  --timeout TIMEOUT    seconds to wait for a connection or a reply (default: 10.0)",
        "  --verbose            also log every HTTP request (httpx)",
        "",
    ]
    assert out.endswith("\n\n" + HELP_TAIL)


class _Login(BaseHTTPRequestHandler):
    """`POST /api/auth/token/` answered with the server's `status` and body, as Switchboard's."""

    protocol_version = "HTTP/1.1"
    answers = {
        401: {
            "detail": "No active account found with the given credentials",
            "code": "bad_credentials",
        },
        429: {"detail": "Too many failed logins; try again later.", "code": "login_throttled"},
    }

    def do_POST(self):  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers["Content-Length"]))
        status = self.server.status
        body = json.dumps(self.answers[status]).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def login_server() -> Iterator[Callable[[int], str]]:
    """`login_server(status)`: the URL of a real HTTP server on 127.0.0.1 refusing every login
    with `status` (401 bad_credentials, 429 login_throttled)."""
    servers = []

    def start(status: int) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Login)
        server.status = status
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_with_password(argv: list[str], monkeypatch) -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO("not the password\n"))
    return main([*argv, "--username", "alice", "--password-stdin"])


def test_a_wrong_password_is_a_refused_login_over_http_not_a_close_code(
    capsys, monkeypatch, login_server
):
    assert run_with_password(["--url", login_server(401)], monkeypatch) == EXIT_CLOSED
    assert capsys.readouterr() == (
        "",
        "login refused: bad username or password (HTTP 401 bad_credentials)\n",
    )


def test_a_throttled_login_says_so_and_exits_1_as_it_may_pass(capsys, monkeypatch, login_server):
    assert run_with_password(["--url", login_server(429)], monkeypatch) == EXIT_FAILED
    assert capsys.readouterr().err == (
        "login failed: Too many failed logins; try again later. (HTTP 429 login_throttled)\n"
    )


def test_a_server_that_is_down_cannot_be_reached_exit_1(capsys, monkeypatch):
    port = closed_port()
    url = f"http://127.0.0.1:{port}"
    assert run_with_password(["--url", f"{url}/prefix/"], monkeypatch) == EXIT_FAILED
    assert capsys.readouterr() == ("", f"cannot reach {url}: connection refused\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n"))
    assert main(["--url", url, "--echo"]) == EXIT_FAILED
    assert capsys.readouterr() == ("", f"cannot reach {url}: connection refused\n")


@pytest.mark.parametrize(
    ("error", "report"),
    [
        (
            LoginRefused("bad_credentials"),
            ("login refused: bad username or password (HTTP 401 bad_credentials)", EXIT_CLOSED),
        ),
        (
            ServerUnreachable("http://h:1", "host not found"),
            ("cannot reach http://h:1: host not found", EXIT_FAILED),
        ),
        (
            RestError(503, "error", "Service Unavailable"),
            ("login failed: Service Unavailable (HTTP 503 error)", EXIT_FAILED),
        ),
        (
            TooManySessions(4502, "too many sessions"),
            ("session refused: closed 4502 (too many sessions)", EXIT_CLOSED),
        ),
        (
            SessionRevoked(4501, "session revoked"),
            ("session refused: closed 4501 (session revoked)", EXIT_CLOSED),
        ),
        (
            HandshakeRefused(403),
            ("cannot connect: WebSocket handshake refused with HTTP 403", EXIT_FAILED),
        ),
    ],
)
def test_each_first_connect_failure_has_its_words_and_exit_code(error, report):
    assert failure_report(error) == report


@pytest.mark.parametrize(
    ("cause", "why"),
    [
        (ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)"), "connection refused"),
        (socket.gaierror(-2, "Name or service not known"), "host not found"),
        (TimeoutError(), "timed out"),
        (OSError(101, "Network is unreachable"), "network is unreachable"),
    ],
)
def test_why_a_connection_failed_is_found_under_httpx_wrapping(cause, why):
    try:
        try:
            raise cause
        except OSError as inner:
            raise httpx.ConnectError("All connection attempts failed") from inner
    except httpx.ConnectError as wrapped:
        assert unreachable_why(wrapped) == why


def cli_subprocess(argv: list[str]) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return subprocess.run(
        [sys.executable, "-m", "switchboard_client", *argv, "--username", "al", "--password-stdin"],
        input="not the password\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment,
        timeout=60,
    )


def test_httpx_request_lines_are_printed_only_with_verbose(login_server):
    url = login_server(401)
    refused = "login refused: bad username or password (HTTP 401 bad_credentials)\n"

    quiet = cli_subprocess(["--url", url])
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (EXIT_CLOSED, "", refused)

    verbose = cli_subprocess(["--url", url, "--verbose"])
    request_line = f'httpx: HTTP Request: POST {url}/api/auth/token/ "HTTP/1.1 401 Unauthorized"\n'
    assert (verbose.returncode, verbose.stderr) == (EXIT_CLOSED, request_line + refused)
