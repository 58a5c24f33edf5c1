"""Compatibility fixes for daphne 4.1-4.2 (checked against 4.2.3); installed by config/asgi.py.

Stock daphne cannot send what the Switchboard protocol documents:
- it closes through autobahn's `sendClose`, which refuses every code but 1000 and
  3000-4999, so 1003/1008/1009 reach the client as 1011; and it drops the close reason;
- it buffers a message up to its own 1 MiB limit before the application can refuse it,
  and above that limit it drops the TCP connection without a close frame;
- its access log writes the full HTTP request URI, query string (`?token=`) included;
- on SIGTERM it cancels the application and drops every socket (clients see 1006), and it
  accepts new connections until it exits: here it stops listening first, then every open
  WebSocket is closed with 1001 "server going away", then the shutdown hooks run (the
  session registry marks this worker's sessions closed);
- a client that stops reading makes Twisted buffer everything sent to it, without bound:
  here, past `max_send_backlog` queued bytes, the frames not yet started are dropped and
  the client is closed with 4009 "slow client" (the connection is cut if it has not read
  that close frame within SLOW_CLIENT_CLOSE_WAIT seconds); other clients are untouched.

Each fix is a small override of one daphne method; `tests/system/test_daphne_compat.py`
shows, against a real daphne, that it is needed and that it works.
"""

import logging
import sys
from collections.abc import Callable

from autobahn.util import encode_truncate

from config.log_redaction import redact

logger = logging.getLogger("switchboard.realtime")
security_log = logging.getLogger("switchboard.security")

COVERED_VERSIONS = ("4.1.", "4.2.")
MAX_REASON_BYTES = 123  # a close frame's payload is at most 125 bytes, 2 of them the code
SHUTDOWN_GRACE = 2.0  # seconds the close handshakes get before daphne drops what is left
SLOW_CLIENT_CODE = 4009
SLOW_CLIENT_CLOSE_WAIT = 10.0  # seconds a shed client gets to read up to its close frame
_open_sockets: set = set()
_listening_ports: list = []  # daphne's listening ports, closed first on SIGTERM
_shutdown_hooks: list[Callable[[], None]] = []


def _server_close(self, code=None, reason=None):
    """Close with any valid code and a reason, bypassing autobahn's application-code filter."""
    code = 1000 if code is None else code
    if getattr(self, "server_close_code", None) is None:
        self.server_close_code = code
    reason_bytes = encode_truncate(reason, MAX_REASON_BYTES) if reason else None
    self.sendCloseFrame(code=code, reasonUtf8=reason_bytes, isReply=False)


def send_backlog(transport) -> int:
    """Bytes a Twisted TCP transport holds that the kernel has not taken yet."""
    written = len(getattr(transport, "dataBuffer", b"")) - getattr(transport, "offset", 0)
    return written + getattr(transport, "_tempDataLen", 0)


def _shed_slow_client(protocol, backlog: int, limit: int) -> None:
    """Drop the frames not yet started (whole frames: Twisted joins them into its write
    buffer only when it writes), then close with 4009."""
    transport = protocol.transport
    pending = getattr(transport, "_tempDataBuffer", None)
    if isinstance(pending, list):
        pending.clear()
        transport._tempDataLen = 0
    protocol.closeHandshakeTimeout = SLOW_CLIENT_CLOSE_WAIT
    security_log.warning(
        "slow client: %d bytes queued for sending (limit %d), closing 4009: path=%s client=%s",
        backlog,
        limit,
        getattr(protocol.request, "path", None),
        protocol.client_addr[0] if protocol.client_addr else None,
    )
    protocol.serverClose(code=SLOW_CLIENT_CODE, reason="slow client")


def _handle_reply_factory(original, max_send_backlog: int):
    def handle_reply(self, message):
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


def _frame_begin_factory(original, max_bytes: int):
    def onMessageFrameBegin(self, length):  # noqa: N802  (autobahn's name)
        if not self.failedByMe and self.message_data_total_length + length > max_bytes:
            # Refuse before buffering: autobahn discards the rest of a failed message.
            self.frame_length, self.frame_data = length, []
            self.message_data_total_length += length
            self.failedByMe = True
            security_log.warning(
                "websocket message too big (%d > %d bytes), closing 1009: path=%s client=%s",
                self.message_data_total_length,
                max_bytes,
                getattr(self.request, "path", None),
                self.client_addr[0] if self.client_addr else None,
            )
            self.sendCloseFrame(code=1009, reasonUtf8=b"message too big", isReply=False)
            return
        original(self, length)

    return onMessageFrameBegin


def _on_open_factory(original):
    def onOpen(self):  # noqa: N802  (autobahn's name)
        _open_sockets.add(self)
        return original(self)

    return onOpen


def _on_close_factory(original):
    def onClose(self, wasClean, code, reason):  # noqa: N802, N803  (autobahn's names)
        _open_sockets.discard(self)
        # The application learns the code the server closed with, also when the client never
        # answered it (a shed slow client, a worker going away) and the drop says 1006.
        code = getattr(self, "server_close_code", None) or code
        return original(self, wasClean, code, reason)

    return onClose


def _listen_success_factory(original):
    def listen_success(self, port):
        _listening_ports.append(port)
        return original(self, port)

    return listen_success


def _going_away():
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
    sockets = list(_open_sockets)
    for protocol in sockets:
        try:
            protocol.serverClose(code=1001, reason="server going away")
        except Exception:
            logger.exception("could not send 1001 to a client")
    logger.warning("shutting down: closed %d WebSocket(s) with 1001", len(sockets))

    def settled(elapsed=[0.0]):  # noqa: B006  (a counter across calls)
        elapsed[0] += 0.1
        if not _open_sockets or elapsed[0] >= SHUTDOWN_GRACE:
            return None
        return task.deferLater(reactor, 0.1, settled)

    waited = task.deferLater(reactor, 0.1, settled) if sockets else defer.succeed(None)
    return waited.addCallback(lambda _: _shutdown_hooks_run())


def _hook_run(hook: Callable[[], None]) -> None:
    try:
        hook()
    except Exception:
        logger.exception("shutdown hook %s failed", getattr(hook, "__name__", hook))


def _shutdown_hooks_run():
    """Run each shutdown hook in Twisted's thread pool (they may block); wait for all."""
    from twisted.internet import defer, threads

    return defer.DeferredList([threads.deferToThread(_hook_run, hook) for hook in _shutdown_hooks])


def _access_log_factory(original):
    def write_entry(self, host, date, request, status=None, length=None, ident=None, user=None):
        request = redact(request)  # the logging filter's rule: JWTs and credential parameters
        return original(self, host, date, request, status, length, ident, user)

    return write_entry


def install(
    *,
    max_message_bytes: int,
    max_send_backlog: int,
    on_shutdown: tuple[Callable[[], None], ...] = (),
) -> bool:
    """Patch daphne once per process; False (and a warning) when daphne is absent or unknown.
    `on_shutdown`: blocking functions run on SIGTERM once the sockets are closed."""
    try:
        import daphne
        from daphne.access import AccessLogGenerator
        from daphne.server import Server
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:
        return False
    if getattr(WebSocketProtocol, "_switchboard_compat", False):
        return True
    _shutdown_hooks.extend(on_shutdown)
    if not daphne.__version__.startswith(COVERED_VERSIONS):
        logger.warning(
            "daphne %s is not covered by realtime.daphne_compat (covers %s); close codes "
            "1003/1008/1009 and close reasons may not reach clients",
            daphne.__version__,
            ", ".join(v + "x" for v in COVERED_VERSIONS),
        )
        return False
    WebSocketProtocol.serverClose = _server_close
    WebSocketProtocol.handle_reply = _handle_reply_factory(
        WebSocketProtocol.handle_reply, max_send_backlog
    )
    WebSocketProtocol.onMessageFrameBegin = _frame_begin_factory(
        WebSocketProtocol.onMessageFrameBegin, max_message_bytes
    )
    AccessLogGenerator.write_entry = _access_log_factory(AccessLogGenerator.write_entry)
    WebSocketProtocol.onOpen = _on_open_factory(WebSocketProtocol.onOpen)
    WebSocketProtocol.onClose = _on_close_factory(WebSocketProtocol.onClose)
    Server.listen_success = _listen_success_factory(Server.listen_success)
    if "twisted.internet.reactor" in sys.modules:  # running under daphne, reactor installed
        from twisted.internet import reactor

        # Registered at import, before daphne's own trigger that cancels the applications.
        reactor.addSystemEventTrigger("before", "shutdown", _going_away)
    WebSocketProtocol._switchboard_compat = True
    return True
