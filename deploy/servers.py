"""The ASGI servers Switchboard runs on, and the one command line each runs it with.

Supported: daphne and uvicorn (runtime dependencies, each with a deploy/systemd unit).
granian was evaluated and is not supported (docs/DEPLOYMENT.md says why); its line is here
for the system tests that keep that evaluation current, and for `make bench`.
docs/DEPLOYMENT.md quotes these lines, the units and deploy/kubernetes/'s Deployment run them,
and the system tests (tests/system/stack.py) start workers with them, so all of them say the
same thing.

What every line does, on every server:
- binds one address and port (a process manager or nginx spreads load over workers);
- trusts no proxy header: Switchboard reads X-Forwarded-For itself, from the right, past
  TRUSTED_PROXIES (a server's own proxy-header option trusts the leftmost address, which
  the client wrote);
- caps a WebSocket message at WS_MAX_MESSAGE_BYTES before it is buffered, where the server
  can (the application closes a larger one with 1009 on every server in any case);
- runs the ASGI lifespan (`realtime.server.lifespan`) where the server has it: daphne has none, and
  its adapter (`realtime.server.daphne_adapter`) calls the same shutdown on SIGTERM.
"""

from dataclasses import dataclass

SUPPORTED = ("daphne", "uvicorn")
EVALUATED = ("granian",)  # run by the server system tests, expected to fail where it does
SERVER_NAMES = (*SUPPORTED, *EVALUATED)
APP = "config.asgi:application"
# uvicorn's sans-I/O WebSocket protocol with Switchboard's connection limits (slow client 4009,
# control frames 4008, documented close reasons, 1001 on SIGTERM).
UVICORN_WS = "realtime.server.uvicorn_adapter:WebSocketProtocol"
# Every server pings an idle WebSocket every PING_INTERVAL seconds and closes it when no pong
# has come back PING_TIMEOUT seconds later (daphne's defaults, said on every line).
PING_INTERVAL = 20
PING_TIMEOUT = 30
# Seconds a SIGTERMed worker waits for its connections to end before it stops anyway; the
# systemd units' TimeoutStopSec is above it.
GRACEFUL_SHUTDOWN_SECONDS = 10


@dataclass(frozen=True)
class ServerCommand:
    """How one server is started: `argv(...)` gives its command line."""

    name: str

    def argv(
        self,
        *,
        host: str,
        port: int | str,
        max_message_bytes: int | str,
        extra: tuple[str, ...] = (),
    ) -> list[str]:
        """The command line, the program first (its name, not its path), `extra` options
        before the application."""
        if self.name == "daphne":
            return [
                *("daphne", "-b", host, "-p", str(port)),
                *("--ping-interval", str(PING_INTERVAL), "--ping-timeout", str(PING_TIMEOUT)),
                *extra,
                APP,
            ]
        if self.name == "uvicorn":
            return [
                "uvicorn",
                APP,
                *("--host", host, "--port", str(port)),
                *("--ws", UVICORN_WS, "--ws-max-size", str(max_message_bytes)),
                *("--ws-ping-interval", str(PING_INTERVAL)),
                *("--ws-ping-timeout", str(PING_TIMEOUT)),
                *("--ws-per-message-deflate", "false"),
                *("--lifespan", "on", "--no-proxy-headers", "--no-server-header"),
                *("--timeout-graceful-shutdown", str(GRACEFUL_SHUTDOWN_SECONDS)),
                *extra,
            ]
        if self.name == "granian":
            return [
                "granian",
                *("--interface", "asgi", "--host", host, "--port", str(port)),
                *("--workers-kill-timeout", str(GRACEFUL_SHUTDOWN_SECONDS)),
                *extra,
                APP,
            ]
        raise ValueError(f"unknown server {self.name!r}: one of {', '.join(SERVER_NAMES)}")


SERVERS = {name: ServerCommand(name) for name in SERVER_NAMES}
