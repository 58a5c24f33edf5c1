"""Compatibility fixes for daphne 4.1-4.2, autobahn 26 and Twisted 26 (checked against daphne
4.2.3, autobahn 26.10.2, Twisted 26.10.0); installed by config/asgi.py.

Stock daphne cannot send what the Switchboard protocol documents:
- it closes through autobahn's `sendClose`, which refuses every code but 1000 and
  3000-4999, so 1003/1008/1009 reach the client as 1011; and it drops the close reason;
- it buffers a message up to its own 1 MiB limit before the application can refuse it,
  and above that limit it drops the TCP connection without a close frame; and a message may
  come in any number of fragments: here more than MAX_FRAGMENTS close it 1009;
- its access log writes the full HTTP request URI, query string (`?token=`) included;
- on SIGTERM it cancels the application and drops every socket (clients see 1006), and it
  accepts new connections until it exits: here it stops listening first, then every open
  WebSocket is closed with 1001 "server going away", then the shutdown hooks run (the
  session registry marks this worker's sessions closed);
- a client that stops reading makes Twisted buffer everything sent to it, without bound:
  here, past `max_send_backlog` queued bytes, the frames not yet started are dropped and
  the client is closed with 4009 "slow client" (the connection is cut if it has not read
  that close frame within SLOW_CLIENT_CLOSE_WAIT seconds); other clients are untouched;
- autobahn answers every ping at once, and nothing counts pings: here control frames (pings
  and pongs) have a token bucket per connection at the message rate; a ping over it is not
  answered, sustained excess closes 4008 "rate limited", and each pong sent is checked against
  the send backlog like a message (4009);
- on invalid UTF-8 in a text frame, or another protocol error, autobahn drops the TCP
  connection without a close frame: here it sends 1007 "invalid UTF-8" (1002 "protocol
  error") first;
- a non-ASCII Sec-WebSocket-Protocol makes daphne's handshake raise (500): here it is 400;
- autobahn formats its whole configuration (`pformat` of some 40 options) for a debug line on
  every connection, logged or not: here it is formatted only if the line is written;
- autobahn cuts the TCP connection 0-1 s after the server's close frame (a 1 s timeout its
  batched timer rounds down to the whole second), so a client still sending, and busy, gets a
  reset before it reads the close frame: here it gets CLOSE_HANDSHAKE_WAIT seconds to answer.

Each fix is a small override of one daphne or autobahn method; `tests/system/
test_daphne_compat.py`, `test_control_frames.py` and `test_close_handshake.py` show, against a
real daphne, that it is needed and that it works.

(Over 300 lines on purpose: every override of daphne, autobahn and Twisted stays in this one
module, under the one version guard, so that an upgrade is checked in one place.)
"""

import logging
import sys
from collections.abc import Callable
from pprint import pformat
from typing import Any

from autobahn.util import encode_truncate

from core.log_redaction import redact
from realtime.hub import hub
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
security_log = logging.getLogger("switchboard.security")

COVERED_VERSIONS = {"daphne": ("4.1.", "4.2."), "autobahn": ("26.",), "twisted": ("26.",)}
MAX_REASON_BYTES = 123  # a close frame's payload is at most 125 bytes, 2 of them the code
SHUTDOWN_GRACE = 2.0  # seconds the close handshakes get before daphne drops what is left
# Seconds a client gets to answer the server's close frame before the TCP connection is cut
# (autobahn's batched timer rounds the deadline down to the whole second: 4-5 s).
CLOSE_HANDSHAKE_WAIT = 5.0


_listening_ports: list[Any] = []  # daphne's listening ports, closed first on SIGTERM
_shutdown_hooks: list[Callable[[], None]] = []


def _close_code_remember(protocol: Any, code: int) -> None:
    """The first code this server closes `protocol` with: what its application is told."""
    if getattr(protocol, "server_close_code", None) is None:
        protocol.server_close_code = code


def _server_close(self: Any, code: Any = None, reason: Any = None) -> Any:
    """Close with any valid code and a reason, bypassing autobahn's application-code filter."""
    code = int(CloseCode.NORMAL) if code is None else code
    _close_code_remember(self, code)
    reason_bytes = encode_truncate(reason, MAX_REASON_BYTES) if reason else None
    self.sendCloseFrame(code=code, reasonUtf8=reason_bytes, isReply=False)


def close_as(protocol: Any, code: CloseCode) -> None:
    """Close `protocol` (through its patched `serverClose`) with `code` and its reason."""
    protocol.serverClose(code=int(code), reason=code.reason)


def send_backlog(transport: Any) -> int:
    """Bytes a Twisted TCP transport holds that the kernel has not taken yet."""
    written = len(getattr(transport, "dataBuffer", b"")) - getattr(transport, "offset", 0)
    return written + getattr(transport, "_tempDataLen", 0)


def _path_and_client(protocol: Any) -> tuple[Any, Any]:
    """What the security log names a connection by: its path and client address."""
    path = getattr(protocol.request, "path", None)
    return path, protocol.client_addr[0] if protocol.client_addr else None


def _shed_slow_client(protocol: Any, backlog: int, limit: int) -> None:
    """Drop the frames not yet started (whole frames: Twisted joins them into its write
    buffer only when it writes), then close with 4009."""
    transport = protocol.transport
    pending = getattr(transport, "_tempDataBuffer", None)
    if isinstance(pending, list):
        pending.clear()
        transport._tempDataLen = 0
    protocol.closeHandshakeTimeout = SLOW_CLIENT_CLOSE_WAIT
    slow_client_log(backlog, limit, *_path_and_client(protocol))
    close_as(protocol, CloseCode.SLOW_CLIENT)


def _handle_reply_factory(original: Any, max_send_backlog: int) -> Any:
    def handle_reply(self: Any, message: Any) -> Any:
        kind = message.get("type")
        if kind == "websocket.close" and self.state != self.STATE_CONNECTING:
            return self.serverClose(code=message.get("code"), reason=message.get("reason"))
        if kind == "websocket.send" and self.state in (self.STATE_CLOSING, self.STATE_CLOSED):
            return None  # closing (a shed slow client, say): nothing more goes out
        result = original(self, message)
        if kind == "websocket.send":
            backlog = send_backlog(self.transport)
            if backlog > max_send_backlog:
                _shed_slow_client(self, backlog, max_send_backlog)
        return result

    return handle_reply


def _message_begin_factory(original: Any) -> Any:
    def onMessageBegin(self: Any, isBinary: Any) -> Any:  # noqa: N802, N803  (autobahn's names)
        self.message_fragments = 0
        return original(self, isBinary)

    return onMessageBegin


def _frame_begin_factory(original: Any, max_bytes: int) -> Any:
    def onMessageFrameBegin(self: Any, length: Any) -> Any:  # noqa: N802  (autobahn's name)
        self.message_fragments = getattr(self, "message_fragments", 0) + 1
        too_big = self.message_data_total_length + length > max_bytes
        if not self.failedByMe and (too_big or self.message_fragments > MAX_FRAGMENTS):
            # Refuse before buffering: autobahn discards the rest of a failed message.
            self.frame_length, self.frame_data = length, []
            self.message_data_total_length += length
            self.failedByMe = True
            why = (
                f"{self.message_data_total_length} > {max_bytes} bytes"
                if too_big
                else f"over {MAX_FRAGMENTS} fragments"
            )
            message_too_big_log(why, *_path_and_client(self))
            too_big = CloseCode.MESSAGE_TOO_BIG
            self.sendCloseFrame(
                code=int(too_big), reasonUtf8=too_big.reason.encode(), isReply=False
            )
            return
        original(self, length)

    return onMessageFrameBegin


def _on_open_factory(original: Any) -> Any:
    def onOpen(self: Any) -> Any:  # noqa: N802  (autobahn's name)
        hub().open_sockets.add(self)
        return original(self)

    return onOpen


def _on_close_factory(original: Any) -> Any:
    def onClose(self: Any, wasClean: Any, code: Any, reason: Any) -> Any:  # noqa: N802, N803  (autobahn's names)
        hub().open_sockets.discard(self)
        # The application learns the code the server closed with, also when the client never
        # answered it (a shed slow client, a worker going away) and the drop says 1006.
        code = getattr(self, "server_close_code", None) or code
        return original(self, wasClean, code, reason)

    return onClose


def _factory_init_factory(original: Any) -> Any:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807  (the method it replaces)
        original(self, *args, **kwargs)
        # A failing connection gets a close frame instead of a TCP drop, and a client gets
        # time to answer a close frame (a busy one still sending, too) before the cut.
        self.setProtocolOptions(failByDrop=False, closeHandshakeTimeout=CLOSE_HANDSHAKE_WAIT)

    return __init__


def _fail_connection_factory(original: Any) -> Any:
    def _fail_connection(self: Any, code: Any = 1001, reason: Any = "going away") -> Any:
        if self.state == self.STATE_CLOSING:
            # A second fault while closing (invalid UTF-8 again, say): keep waiting for the
            # client's close. Cutting now would reset a client still sending before it has
            # read the close frame on its way.
            self.failedByMe = True
            return
        if self.state != self.STATE_OPEN:
            return original(self, code, reason)
        documented = FAIL_CLOSES.get(code)
        protocol_failure_log(reason, code, *_path_and_client(self))
        self.failedByMe = True  # autobahn delivers nothing more of this connection
        _close_code_remember(self, code)
        reason_bytes = encode_truncate(
            documented.reason if documented else reason, MAX_REASON_BYTES
        )
        self.sendCloseFrame(code=code, reasonUtf8=reason_bytes, isReply=False)

    return _fail_connection


def _on_connect_factory(original: Any) -> Any:
    def onConnect(self: Any, request: Any) -> Any:  # noqa: N802  (autobahn's name)
        from autobahn.websocket.types import ConnectionDeny

        # daphne decodes the offered subprotocols as ASCII, and fails the handshake with 500
        # on anything else; header values arrive here decoded as Latin-1.
        if not request.headers.get("sec-websocket-protocol", "").isascii():
            security_log.warning(
                "websocket handshake refused 400: non-ASCII Sec-WebSocket-Protocol: "
                "path=%s client=%s",
                request.path,
                getattr(self.transport.getPeer(), "host", None),
            )
            deny = ConnectionDeny(400, "Invalid Sec-WebSocket-Protocol")  # type: ignore[no-untyped-call]
            raise deny
        return original(self, request)

    return onConnect


def _control_frame_counted(protocol: Any, limits: ControlFrameLimits) -> bool:
    """Count one ping or pong against `protocol`'s control-frame counter; False when over the
    rate. A flood closes it 4008."""
    counter = getattr(protocol, "control_frames", None)
    if counter is None:  # the first control frame of this connection
        counter = protocol.control_frames = ControlFrameCounter(limits)
    within, flood = counter.count()
    if flood and protocol.state == protocol.STATE_OPEN:
        control_flood_log(*_path_and_client(protocol))
        close_as(protocol, CloseCode.RATE_LIMITED)
    return within


def _on_ping_factory(original: Any, limits: ControlFrameLimits, max_send_backlog: int) -> Any:
    def onPing(self: Any, payload: Any) -> Any:  # noqa: N802  (autobahn's name)
        if not _control_frame_counted(self, limits):
            return  # over the rate: not answered (nothing piles up for a client not reading)
        original(self, payload)  # the pong
        backlog = send_backlog(self.transport)
        if backlog > max_send_backlog and self.state == self.STATE_OPEN:
            _shed_slow_client(self, backlog, max_send_backlog)

    return onPing


def _on_pong_factory(original: Any, limits: ControlFrameLimits) -> Any:
    def onPong(self: Any, payload: Any) -> Any:  # noqa: N802  (autobahn's name)
        _control_frame_counted(self, limits)  # nothing to refuse, but a flood is closed 4008
        return original(self, payload)

    return onPong


def _listen_success_factory(original: Any) -> Any:
    def listen_success(self: Any, port: Any) -> Any:
        _listening_ports.append(port)
        return original(self, port)

    return listen_success


def _going_away() -> Any:
    """Twisted's before-shutdown trigger: stop accepting connections, close every open
    WebSocket with 1001, wait (at most SHUTDOWN_GRACE) for the close handshakes, then run the
    shutdown hooks."""
    from twisted.internet import defer, reactor, task

    # A client told 1001 reconnects at once: refused here, it reaches a worker that stays
    # (behind a balancer) instead of a session on this one that the exit would cut with 1006.
    for port in _listening_ports:
        try:
            port.stopListening()
        except Exception:  # the sockets must get their 1001 whatever happens here
            logger.exception("could not stop listening on %s", port)
    open_sockets = hub().open_sockets
    sockets = list(open_sockets)
    for protocol in sockets:
        try:
            close_as(protocol, CloseCode.GOING_AWAY)
        except Exception:
            logger.exception("could not send %d to a client", CloseCode.GOING_AWAY)
    logger.warning(
        "shutting down: closed %d WebSocket(s) with %d", len(sockets), CloseCode.GOING_AWAY
    )

    def settled(elapsed: Any = [0.0]) -> Any:  # noqa: B006  (a counter across calls)
        elapsed[0] += 0.1
        if not open_sockets or elapsed[0] >= SHUTDOWN_GRACE:
            return None
        return task.deferLater(reactor, 0.1, settled)

    waited = task.deferLater(reactor, 0.1, settled) if sockets else defer.succeed(None)
    return waited.addCallback(lambda _: _shutdown_hooks_run())


def _hook_run(hook: Callable[[], None]) -> None:
    try:
        hook()
    except Exception:
        logger.exception("shutdown hook %s failed", getattr(hook, "__name__", hook))


def _shutdown_hooks_run() -> Any:
    """Run each shutdown hook in Twisted's thread pool (they may block); wait for all."""
    from twisted.internet import defer, threads

    return defer.DeferredList([threads.deferToThread(_hook_run, hook) for hook in _shutdown_hooks])


def _access_log_factory(original: Any) -> Any:
    def write_entry(
        self: Any,
        host: Any,
        date: Any,
        request: Any,
        status: Any = None,
        length: Any = None,
        ident: Any = None,
        user: Any = None,
    ) -> Any:
        request = redact(request)  # the logging filter's rule: JWTs and credential parameters
        return original(self, host, date, request, status, length, ident, user)

    return write_entry


class LazyPformat:
    """What autobahn's `_connectionMade` passes for its debug line instead of
    `pprint.pformat(options)`: formatted when the line is written, never before."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __format__(self, spec: str) -> str:
        return format(pformat(self.value), spec)

    def __str__(self) -> str:
        return pformat(self.value)

    __repr__ = __str__


def versions_uncovered() -> list[str]:
    """The installed packages among daphne, autobahn and Twisted whose version this module was
    not checked against, as "name version"; empty when all are covered."""
    import autobahn
    import daphne
    import twisted

    installed = {"daphne": daphne, "autobahn": autobahn, "twisted": twisted}
    return [
        f"{name} {module.__version__}"
        for name, module in installed.items()
        if not module.__version__.startswith(COVERED_VERSIONS[name])
    ]


def install(
    *,
    max_message_bytes: int,
    max_send_backlog: int,
    control_frames_per_second: float,
    control_frame_burst: int,
    rate_abuse_window: float,
    on_shutdown: tuple[Callable[[], None], ...] = (),
) -> bool:
    """Patch daphne once per process; False (and a warning) when daphne is absent or unknown.
    `control_frames_per_second`/`control_frame_burst`: the pings and pongs a connection may
    send; more than `control_frame_burst` over that rate within `rate_abuse_window` seconds
    closes it 4008. `on_shutdown`: blocking functions run on SIGTERM once the sockets are
    closed."""
    try:
        import autobahn.websocket.protocol as autobahn_protocol
        from daphne.access import AccessLogGenerator
        from daphne.server import Server
        from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
    except ImportError:
        return False
    if getattr(WebSocketProtocol, "_switchboard_compat", False):
        return True
    _shutdown_hooks.extend(on_shutdown)
    uncovered = versions_uncovered()
    if uncovered:
        logger.warning(
            "%s not covered by realtime.server.daphne_adapter (covers %s); close codes "
            "1003/1007/1008/1009, close reasons and the control-frame and backlog limits may "
            "not hold",
            ", ".join(uncovered),
            ", ".join(
                f"{name} {'/'.join(v + 'x' for v in versions)}"
                for name, versions in COVERED_VERSIONS.items()
            ),
        )
        return False
    control_limits = ControlFrameLimits(
        rate=control_frames_per_second, burst=control_frame_burst, window=rate_abuse_window
    )
    WebSocketProtocol.serverClose = _server_close
    WebSocketProtocol.handle_reply = _handle_reply_factory(
        WebSocketProtocol.handle_reply, max_send_backlog
    )
    WebSocketProtocol.onMessageBegin = _message_begin_factory(WebSocketProtocol.onMessageBegin)
    WebSocketProtocol.onMessageFrameBegin = _frame_begin_factory(
        WebSocketProtocol.onMessageFrameBegin, max_message_bytes
    )
    AccessLogGenerator.write_entry = _access_log_factory(AccessLogGenerator.write_entry)
    WebSocketProtocol.onOpen = _on_open_factory(WebSocketProtocol.onOpen)
    WebSocketProtocol.onClose = _on_close_factory(WebSocketProtocol.onClose)
    WebSocketProtocol.onConnect = _on_connect_factory(WebSocketProtocol.onConnect)
    WebSocketProtocol.onPing = _on_ping_factory(
        WebSocketProtocol.onPing, control_limits, max_send_backlog
    )
    WebSocketProtocol.onPong = _on_pong_factory(WebSocketProtocol.onPong, control_limits)
    WebSocketProtocol._fail_connection = _fail_connection_factory(
        WebSocketProtocol._fail_connection
    )
    WebSocketFactory.__init__ = _factory_init_factory(WebSocketFactory.__init__)
    # Its per-connection debug line: formatted only if written.
    autobahn_protocol.pformat = LazyPformat  # type: ignore[attr-defined,assignment]
    Server.listen_success = _listen_success_factory(Server.listen_success)
    if "twisted.internet.reactor" in sys.modules:  # running under daphne, reactor installed
        from twisted.internet import reactor

        # Registered at import, before daphne's own trigger that cancels the applications.
        # (Twisted types the phase as a callable; its documented API takes the phase name.)
        reactor.addSystemEventTrigger("before", "shutdown", _going_away)  # type: ignore[arg-type]
    WebSocketProtocol._switchboard_compat = True
    return True
