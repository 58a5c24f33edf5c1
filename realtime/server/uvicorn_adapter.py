"""uvicorn's WebSocket protocol held to Switchboard's limits: run uvicorn with
`--ws realtime.server.uvicorn_adapter:WebSocketProtocol` (deploy/servers.py's line does).
Checked against uvicorn 0.54 (`websockets_sansio_impl.WebSocketsSansIOProtocol`) and
websockets 17 (`ServerProtocol`); on any other version `WebSocketProtocol` is uvicorn's own,
with a warning, and a unit test fails on it, so that an upgrade is read before it ships.

Stock uvicorn (`--ws websockets-sansio`) cannot hold what the protocol documents:
- its `send()` waits while a client's socket buffer is over the high-water mark, so one
  client that stops reading holds up every task that sends to it, the worker's room fan-out
  included: here a send never waits; past `max_send_backlog` queued bytes the client is
  closed 4009 "slow client" (its application told 4009), and cut if it has not read up to
  that close frame within SLOW_CLIENT_CLOSE_WAIT seconds; other clients are untouched;
- every ping is answered, none counted: here pings and pongs have the same token bucket per
  connection as on daphne (a ping over it is not answered, a flood closes 4008), and each pong
  counts against the send backlog (4009);
- protocol failures close with the websockets library's wording (byte counts, or nothing
  for invalid UTF-8, which also logs a traceback): here the close carries the documented
  reason and the security log one line, daphne's;
- SIGTERM closes every socket 1012 with no reason before the lifespan shutdown runs: here
  1001 "server going away", as on daphne, and the application is told 1001 (the registry
  records it);
- every `transport.close()` waits for the buffer to drain, forever when the client never
  reads (after a close handshake, a protocol failure, a keepalive timeout, a shutdown): here
  a connection still holding unsent bytes is cut CLOSE_HANDSHAKE_WAIT seconds later;
- a message may come in any number of empty continuation frames, each one kept and none
  counted against `--ws-max-size`: here more than MAX_FRAGMENTS close it 1009;
- a keepalive timeout tells the application nothing until the socket is gone (then 1005):
  here it is told 1011.
"""

import logging
from collections import deque
from importlib.metadata import version
from typing import Any

from realtime.protocol.codes import CloseCode
from realtime.server.connection_limits import (
    FAIL_CLOSES,
    MAX_FRAGMENTS,
    SLOW_CLIENT_CLOSE_WAIT,
    ControlFrameCounter,
    ControlFrameLimits,
    control_flood_log,
    message_too_big_log,
    protocol_failure_log,
    slow_client_log,
)

logger = logging.getLogger("switchboard.realtime")

COVERED_VERSIONS = {"uvicorn": ("0.54.",), "websockets": ("17.",)}
CLOSE_HANDSHAKE_WAIT = 5.0  # seconds a client gets to answer the server's close frame


def versions_uncovered() -> list[str]:
    """The installed uvicorn and websockets, where this module was not checked against them."""
    return [
        f"{name} {version(name)}"
        for name, covered in COVERED_VERSIONS.items()
        if not version(name).startswith(covered)
    ]


def _adapted_protocol() -> Any:
    """The adapted protocol class, built only when uvicorn and websockets are covered."""
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from websockets.frames import Opcode
    from websockets.protocol import State
    from websockets.server import ServerProtocol

    class HeldPingServerProtocol(ServerProtocol):
        """websockets' server protocol, except that a ping is not answered on arrival: its
        payload waits in `held_pings` for the adapter to answer it, or not; and a failure
        closes with the documented reason."""

        def recv_frame(self, frame: Any) -> None:
            if frame.opcode is Opcode.PING:
                self.__dict__.setdefault("held_pings", deque()).append(frame.data)
                self.events.append(frame)
                return
            super().recv_frame(frame)

        def fail(self, code: int, reason: str = "") -> None:
            documented = FAIL_CLOSES.get(int(code))
            self.failure = reason  # the library's wording, for the log
            super().fail(code, documented.reason if documented else reason)

    class WebSocketProtocol(WebSocketsSansIOProtocol):
        """uvicorn's sans-I/O WebSocket protocol with Switchboard's limits (module docstring)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.conn.__class__ = HeldPingServerProtocol  # same state, one method differs
            self.control_frames: ControlFrameCounter | None = None
            self.message_dropped = False  # the message over MAX_FRAGMENTS, until its last one

        # -- sending: never waits, bounded by the backlog --------------------------------

        def pause_writing(self) -> None:
            """Never hold the application's sends: the send backlog bounds the buffer."""

        def resume_writing(self) -> None:
            pass

        async def send(self, message: Any) -> None:
            kind = message["type"]
            opened = self.handshake_complete and self.initial_response is None
            if opened and self.close_sent and kind in ("websocket.send", "websocket.close"):
                return  # closing (a shed slow client, say): nothing more goes out
            await super().send(message)
            if not opened or self.disconnected:
                return
            if kind == "websocket.send":
                self.backlog_check()
            elif kind == "websocket.close":
                self.close_timer_cuts(CLOSE_HANDSHAKE_WAIT)

        def backlog_check(self) -> None:
            """Close a client whose unread backlog is over the limit with 4009."""
            backlog = self.transport.get_write_buffer_size()
            if backlog <= _limits().max_send_backlog or self.close_sent:
                return
            slow_client_log(backlog, _limits().max_send_backlog, *self.path_and_client())
            self.server_close(CloseCode.SLOW_CLIENT, wait=SLOW_CLIENT_CLOSE_WAIT)

        def server_close(self, code: CloseCode, *, wait: float) -> None:
            """Send `code` with its reason, tell the application, and cut the connection if
            the client has not answered within `wait` seconds. When the client has begun
            closing already (its close frame came in the same read), its close is answered
            (`handle_close`, with the application told the client's code): only the cut of a
            connection stuck on unsent bytes is left to arm here."""
            if self.conn.state is not State.OPEN:
                self.cut_if_stuck(wait)
                return
            self.queue.put_nowait(
                {"type": "websocket.disconnect", "code": int(code), "reason": code.reason}
            )
            self.conn.send_close(int(code), code.reason)
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            if self.read_paused:  # read on, to see the client's close
                self.read_paused = False
                self.transport.resume_reading()
            self.close_timer_cuts(wait)

        def close_timer_cuts(self, wait: float) -> None:
            if self.close_timer is not None:
                self.close_timer.cancel()
            self.close_timer = self.loop.call_later(wait, self.transport.abort)

        def cut_if_stuck(self, wait: float = CLOSE_HANDSHAKE_WAIT) -> None:
            """After uvicorn's own `transport.close()`: a transport still holding unsent bytes
            waits for a client that may never read; cut it `wait` seconds from now."""
            if not self.transport.is_closing() or self.transport.get_write_buffer_size() == 0:
                return
            if self.close_timer is None:
                self.close_timer = self.loop.call_later(wait, self.transport.abort)

        def handle_close(self, event: Any) -> None:
            super().handle_close(event)  # may close the transport (and cancel the cut)
            self.cut_if_stuck()

        async def run_asgi(self) -> None:
            await super().run_asgi()
            self.cut_if_stuck()

        def keepalive_timeout(self) -> None:
            """uvicorn's, with the application told 1011 (it heard nothing, then 1005)."""
            if not self.close_sent and not self.transport.is_closing():
                reason = "keepalive ping timeout"
                self.queue.put_nowait(
                    {"type": "websocket.disconnect", "code": 1011, "reason": reason}
                )
            super().keepalive_timeout()
            self.cut_if_stuck()

        # -- fragmented messages ----------------------------------------------------------

        def handle_cont(self, event: Any) -> None:
            """uvicorn's, with a bound on the fragments of one message: empty continuation
            frames never reach `--ws-max-size`, and each one was kept."""
            if self.message_dropped:  # past the bound: dropped up to its last fragment
                self.message_dropped = not event.fin
                return
            if self.close_sent:
                return  # closing: nothing more reaches the application
            if len(self.frames) >= MAX_FRAGMENTS and not event.fin:
                self.frames, self.message_dropped = [], True  # and the fragments still to come
                if self.conn.state is State.OPEN:  # else the client's close came in this read
                    why = f"over {MAX_FRAGMENTS} fragments"
                    message_too_big_log(why, *self.path_and_client())
                self.server_close(CloseCode.MESSAGE_TOO_BIG, wait=CLOSE_HANDSHAKE_WAIT)
                return
            super().handle_cont(event)

        # -- control frames ---------------------------------------------------------------

        def control_frame_counted(self) -> bool:
            """Count one ping or pong; False when over the rate. A flood closes 4008."""
            if self.control_frames is None:
                self.control_frames = ControlFrameCounter(_limits().control)
            within, flood = self.control_frames.count()
            if flood and not self.close_sent and self.conn.state is State.OPEN:
                control_flood_log(*self.path_and_client())
                self.server_close(CloseCode.RATE_LIMITED, wait=CLOSE_HANDSHAKE_WAIT)
            return within

        def handle_ping(self) -> None:
            payload = self.conn.__dict__["held_pings"].popleft()
            if not self.control_frame_counted():
                return  # over the rate: not answered (nothing piles up for a non-reader)
            if self.close_sent or self.conn.state is not State.OPEN:
                return
            self.conn.send_pong(payload)
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.backlog_check()

        def handle_pong(self, event: Any) -> None:
            self.control_frame_counted()  # nothing to refuse, but a flood is closed 4008
            super().handle_pong(event)

        # -- failures and shutdown --------------------------------------------------------

        def handle_parser_exception(self) -> None:
            if self.close_sent:  # after our own close: the application was told already
                self.transport.close()
                self.cut_if_stuck()
                return
            close = self.conn.close_sent
            if close is not None:
                why = getattr(self.conn, "failure", "") or close.reason
                if close.code == CloseCode.MESSAGE_TOO_BIG:
                    message_too_big_log(why, *self.path_and_client())
                else:
                    protocol_failure_log(why, close.code, *self.path_and_client())
            super().handle_parser_exception()
            self.cut_if_stuck()

        def send_receive_event_to_app(self) -> None:
            """uvicorn's, except that invalid UTF-8 closes 1007 with its reason and one log
            line (uvicorn logs a traceback and sends no reason)."""
            if self.curr_msg_data_type != "text" or self.close_sent:
                super().send_receive_event_to_app()
                return
            data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
            try:
                text = data.decode()
            except UnicodeDecodeError as e:
                self.frames = []
                if self.conn.state is not State.OPEN:
                    return  # the client's close came in the same read: it is answered
                invalid, why = CloseCode.INVALID_PAYLOAD, f"invalid UTF-8 at byte {e.start}"
                protocol_failure_log(why, invalid, *self.path_and_client())
                self.server_close(invalid, wait=CLOSE_HANDSHAKE_WAIT)
                return
            self.frames = []
            self.queue.put_nowait({"type": "websocket.receive", "text": text})
            if not self.read_paused:
                self.read_paused = True
                self.transport.pause_reading()

        def shutdown(self) -> None:
            """SIGTERM: 1001 "server going away" to an open socket (uvicorn's own 1012
            otherwise)."""
            if not self.handshake_complete or self.close_sent or self.initial_response:
                super().shutdown()
                self.cut_if_stuck()
                return
            self.stop_keepalive()
            self.server_close(CloseCode.GOING_AWAY, wait=CLOSE_HANDSHAKE_WAIT)

        def path_and_client(self) -> tuple[Any, Any]:
            scope = getattr(self, "scope", None) or {}
            return scope.get("path"), self.client[0] if self.client else None

    return WebSocketProtocol


class AdapterLimits:
    """The limits the adapted protocol reads from the settings, once per process."""

    def __init__(self) -> None:
        from django.conf import settings

        self.max_send_backlog: int = settings.WS_MAX_SEND_BACKLOG
        self.control = ControlFrameLimits.from_settings()


_cached_limits: list[AdapterLimits] = []


def _limits() -> AdapterLimits:
    """The settings' limits (read on first use: uvicorn imports this module before it loads
    the application, and with it Django's settings)."""
    if not _cached_limits:
        _cached_limits.append(AdapterLimits())
    return _cached_limits[0]


def _protocol_class() -> Any:
    uncovered = versions_uncovered()
    if uncovered:
        from uvicorn.protocols.websockets.websockets_sansio_impl import (
            WebSocketsSansIOProtocol,
        )

        logger.warning(
            "%s not covered by realtime.server.uvicorn_adapter (covers uvicorn 0.54.x, "
            "websockets 17.x): running uvicorn's own WebSocket protocol, without the "
            "slow-client, control-frame and close-reason fixes",
            ", ".join(uncovered),
        )
        return WebSocketsSansIOProtocol
    return _adapted_protocol()


WebSocketProtocol = _protocol_class()
