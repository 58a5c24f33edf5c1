"""`python -m switchboard_client`: log in, then a prompt like wscat (lines sent, frames printed).

The exit codes, the interactive commands and the defaults are in `--help` (EXIT_CODES,
COMMANDS and parser_build below), and in docs.

Over 300 lines because the command line's whole surface (arguments, help texts, prompt
commands, exit codes and the messages people read) is one thing to review, kept together.
"""

import argparse
import asyncio
import getpass
import json
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Iterable
from typing import Any, NoReturn

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from switchboard_client.client import SwitchboardClient
from switchboard_client.errors import (
    CloseAction,
    LoginRefused,
    RequestError,
    RestError,
    ServerUnreachable,
    SwitchboardClosed,
    SwitchboardError,
    close_action,
    unreachable_why,
)
from switchboard_client.rest import origin, ws_url
from switchboard_client.subscription import Subscription

EXIT_OK, EXIT_FAILED, EXIT_CLOSED, EXIT_USAGE = 0, 1, 2, 64
PASSWORD_ENV = "SWITCHBOARD_PASSWORD"  # noqa: S105  (the variable's name, not a password)
DEFAULT_URL = "http://127.0.0.1:8000"
# Loggers that write a line per HTTP request: quiet unless --verbose. Never DEBUG: at that
# level httpcore and websockets write request headers, and those carry the access token.
CHATTY_LOGGERS = ("httpx", "httpcore")

# What a line typed at the prompt does (one source for --help and for the prompt's own help).
COMMANDS = (
    ("/ping", "send a ping and print the round-trip time"),
    ("/sub ROOM", "subscribe to ROOM; its messages are printed as they arrive"),
    ("/unsub ROOM", "leave ROOM"),
    ("/pub ROOM DATA", "publish DATA to ROOM (as JSON when it parses, else as a string)"),
    ("/presence ROOM", "print who is subscribed to ROOM now, on every worker"),
    ("/history ROOM", "print the messages ROOM's history keeps (namespaces with history)"),
    ("/quit", "wait for the replies still due, then exit (so does the end of input)"),
    ("{...} or [...]", "a JSON object or array is sent as it is"),
    ("any other line", 'sent as an echo: {"type":"echo","data":LINE}'),
)
EXIT_CODES = (
    (EXIT_OK, "end of input or /quit"),
    (EXIT_FAILED, "could not connect or log in for a reason that may pass: server unreachable,"),
    (None, "HTTP 403/429/5xx, gave up reconnecting"),
    (EXIT_CLOSED, "refused or ended for good: bad username or password, a close 4500-4999,"),
    (None, "or another close that is not retried"),
    (EXIT_USAGE, "usage error: a missing --username, no password, an unknown option"),
)


def _table(rows: Iterable[tuple[object, str]], width: int) -> str:
    return "\n".join(f"  {'' if key is None else key:<{width}}{text}" for key, text in rows)


COMMANDS_HELP = "commands at the prompt:\n" + _table(COMMANDS, 18)
EPILOG = f"""{COMMANDS_HELP}

with --echo, every line is sent to /ws/echo/ as text, and /quit ends.

the password: the first line of stdin with --password-stdin, else ${PASSWORD_ENV}, else a
prompt on a terminal (there is no --password option: it would land in shell history and ps).

exit codes:
{_table(EXIT_CODES, 4)}"""


class UsageError(Exception):
    """A bad command line: reported with exit code 64."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own exit code 2 is our "closed"
        raise UsageError(message)


def parser_build() -> argparse.ArgumentParser:
    """The command line's options."""
    # No abbreviations: `--password x` must not pass for `--password-stdin`.
    parser = _Parser(
        prog="python -m switchboard_client",
        description="Log in to a Switchboard site and open /ws/session/: a prompt like wscat\n"
        "(the lines you type are sent, every frame received is printed).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--url", default=DEFAULT_URL, help="the site's base URL (default: %(default)s)"
    )
    parser.add_argument("--username", help="log in as this user (not needed with --echo)")
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help=f"read the password from the first line of stdin (else ${PASSWORD_ENV}, else a "
        "prompt)",
    )
    parser.add_argument(
        "--echo", action="store_true", help="talk to the anonymous /ws/echo/ instead (no login)"
    )
    parser.add_argument("--json", action="store_true", help="print frames raw, one per line")
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for a connection or a reply (default: %(default)s)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="also log every HTTP request (httpx)"
    )
    return parser


def password_get(args: argparse.Namespace) -> str:
    """The password: stdin's first line, $SWITCHBOARD_PASSWORD, or a prompt on a terminal."""
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise UsageError("--password-stdin: stdin is empty")
        return line.rstrip("\r\n")
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if sys.stdin.isatty():
        return getpass.getpass(f"password for {args.username}: ")
    raise UsageError(f"no password: use --password-stdin or ${PASSWORD_ENV}")


def lines_start() -> asyncio.Queue[str | None]:
    """Stdin's lines in a queue, None at the end. A daemon thread reads them: it never keeps
    the process alive, and it works for terminals, pipes and files alike."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\r\n"))
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=read, name="stdin", daemon=True).start()
    return queue


def out(text: str) -> None:
    print(text, flush=True)


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def frame_format(frame: dict[str, Any]) -> str:
    """One frame as a line for people (`--json` prints the frame itself)."""
    kind = frame.get("type")
    if kind == "message":
        sender = (frame.get("from") or {}).get("username", "(server)")
        offset = f" #{frame['offset']}" if "offset" in frame else ""
        return f"[{frame.get('channel')}]{offset} {sender}: {_compact(frame.get('data'))}"
    if kind == "history" and isinstance(frame.get("messages"), list):
        messages = [m for m in frame["messages"] if isinstance(m, dict)]
        head = f"history [{frame.get('channel')}] {len(messages)} message(s), up to #"
        head += f"{frame.get('offset')} (epoch {frame.get('epoch')})"
        return "\n".join([head, *(f"  {frame_format(m)}" for m in messages)])
    if kind == "error":
        return f"error {frame.get('code')}: {frame.get('message')}"
    if kind == "welcome":
        user = (frame.get("user") or {}).get("username")
        return (
            f"welcome {user} (session {frame.get('session_id')}, expires {frame.get('expires_at')})"
        )
    rest = {key: value for key, value in frame.items() if key not in ("type", "id")}
    return f"{kind} {_compact(rest)}" if rest else str(kind)


class FramePrinter:
    """`on_frame` for the client: print every frame, except the pong of the closing ping."""

    def __init__(self, *, raw: bool) -> None:
        self.raw = raw
        self.draining = False

    def __call__(self, frame: dict[str, Any]) -> None:
        if self.draining and frame.get("type") == "pong":
            return
        out(_compact(frame) if self.raw else frame_format(frame))


async def command_run(
    client: SwitchboardClient, line: str, rooms: dict[str, Subscription], *, raw: bool
) -> bool:
    """Carry out one input line; False for /quit. Replies are printed by the FramePrinter."""
    text = line.strip()
    if not text:
        return True
    if text[0] in "{[":
        try:
            json.loads(text)
        except ValueError:
            pass
        else:
            await client.send_raw(text)
            return True
    if not text.startswith("/"):
        await client.echo(line)
        return True
    command, _, argument = text.partition(" ")
    argument = argument.strip()
    if command == "/quit":
        return False
    if command == "/ping":
        rtt = await client.ping()
        (note if raw else out)(f"rtt {rtt * 1000:.1f} ms")
    elif command == "/sub" and argument:
        say = note if raw else out
        subscription = await client.subscribe(argument, on_missed=lambda e: say(str(e)))
        previous, rooms[argument] = rooms.get(argument), subscription
        if previous is not None:  # the room stays joined: one subscription prints its gaps
            await previous.aclose()
    elif command == "/unsub" and argument in rooms:
        await rooms.pop(argument).aclose()
    elif command == "/pub" and " " in argument:
        channel, _, data = argument.partition(" ")
        try:
            value = json.loads(data)
        except ValueError:
            value = data
        await client.publish(channel, value)
    elif command == "/presence" and argument:
        await client.presence(argument)
    elif command == "/history" and argument:
        await client.history(argument)
    else:
        note(COMMANDS_HELP)
    return True


async def session_run(args: argparse.Namespace, password: str) -> int:
    """The `/ws/session/` prompt."""
    printer = FramePrinter(raw=args.json)
    client = SwitchboardClient(
        args.url,
        username=args.username,
        password=password,
        request_timeout=args.timeout,
        on_frame=printer,
    )
    try:
        await client.connect()
    except SwitchboardError as e:
        text, code = failure_report(e)
        note(text)
        return code
    lines = lines_start()
    stopped = asyncio.create_task(client.wait_closed())
    rooms: dict[str, Subscription] = {}
    try:
        while True:
            next_line = asyncio.create_task(lines.get())
            await asyncio.wait({next_line, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if stopped.done():
                next_line.cancel()
                break
            line = next_line.result()
            try:
                if line is None or not await command_run(client, line, rooms, raw=args.json):
                    # The server answers a connection's frames in order: once this pong
                    # is back, every reply to what was sent has been printed.
                    printer.draining = True
                    await _quietly(client.ping())
                    return EXIT_OK
            except RequestError:
                pass  # the error frame is already printed
            except TimeoutError:
                note(f"no reply within {args.timeout} s")
            except SwitchboardError as e:
                note(str(e))
    finally:
        await client.aclose()
    error = client.error
    note(f"stopped: {error}")
    return EXIT_CLOSED if isinstance(error, SwitchboardClosed) else EXIT_FAILED


async def _quietly(awaitable: Awaitable[object]) -> None:
    try:
        await awaitable
    except (SwitchboardError, TimeoutError) as e:
        note(f"no final reply: {type(e).__name__}")


async def echo_run(args: argparse.Namespace) -> int:
    """The `/ws/echo/` prompt: lines sent as text, replies printed as they come."""
    url = ws_url(base_url=args.url, path="/ws/echo/")
    try:
        ws = await connect(url, open_timeout=args.timeout)
    except (OSError, TimeoutError) as e:
        note(str(ServerUnreachable(origin(args.url), unreachable_why(e))))
        return EXIT_FAILED
    except InvalidHandshake as e:
        note(f"cannot connect: {type(e).__name__}: {e}")
        return EXIT_FAILED
    received = 0
    all_back = asyncio.Event()
    sent = 0

    async def read() -> None:
        nonlocal received
        try:
            async for message in ws:
                out(message if isinstance(message, str) else message.hex())
                received += 1
                if received >= sent:
                    all_back.set()
        except ConnectionClosed:
            pass

    reader = asyncio.create_task(read())
    lines = lines_start()
    async with ws:
        while True:
            next_line = asyncio.create_task(lines.get())
            await asyncio.wait({next_line, reader}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                next_line.cancel()
                code = ws.close_code
                note(f"closed {code} {ws.close_reason or ''}".rstrip())
                return EXIT_CLOSED if close_action(code) is CloseAction.STOP else EXIT_FAILED
            line = next_line.result()
            if line is None or line.strip() == "/quit":
                if received < sent:
                    all_back.clear()
                    try:
                        async with asyncio.timeout(args.timeout):
                            await all_back.wait()
                    except TimeoutError:
                        note(f"{sent - received} replies missing")
                reader.cancel()
                return EXIT_OK
            sent += 1
            await ws.send(line)


async def run(args: argparse.Namespace) -> int:
    if args.echo:
        return await echo_run(args)
    return await session_run(args, password_get(args))


def failure_report(error: SwitchboardError) -> tuple[str, int]:
    """What to print, and the exit code, when the first connect fails with `error`."""
    if isinstance(error, LoginRefused | ServerUnreachable):
        return str(error), EXIT_CLOSED if isinstance(error, LoginRefused) else EXIT_FAILED
    if isinstance(error, RestError):  # 429 login_throttled, 5xx: may pass
        return f"login failed: {error.detail} (HTTP {error.status} {error.code})", EXIT_FAILED
    if isinstance(error, SwitchboardClosed):
        return f"session refused: closed {error.code} ({error.reason})", EXIT_CLOSED
    return f"cannot connect: {error}", EXIT_FAILED


def logging_setup(*, verbose: bool) -> None:
    """Log lines to stderr: the client's own (reconnects), and each HTTP request if `verbose`."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """Parse `argv`, run, and return the exit code."""
    try:
        try:
            args = parser_build().parse_args(argv)
        except SystemExit as e:  # --help, printed: error() raises UsageError instead
            return EXIT_OK if e.code is None else int(e.code)
        logging_setup(verbose=args.verbose)
        if not args.echo and not args.username:
            raise UsageError("--username is required (or --echo)")
        return asyncio.run(run(args))
    except UsageError as e:
        note(f"usage error: {e}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK
