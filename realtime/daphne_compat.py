"""Compatibility fixes for daphne 4.1-4.2 (checked against 4.2.3); installed by config/asgi.py.

Stock daphne cannot send what the Switchboard protocol documents:
- it closes through autobahn's `sendClose`, which refuses every code but 1000 and
  3000-4999, so 1003/1008/1009 reach the client as 1011; and it drops the close reason;
- it buffers a message up to its own 1 MiB limit before the application can refuse it,
  and above that limit it drops the TCP connection without a close frame;
- its access log writes the full HTTP request URI, query string (`?token=`) included.

Each fix is a small override of one daphne method; `tests/system/test_daphne_compat.py`
shows, against a real daphne, that it is needed and that it works.
"""

import logging

from autobahn.util import encode_truncate

from config.log_redaction import redact

logger = logging.getLogger("switchboard.realtime")
security_log = logging.getLogger("switchboard.security")

COVERED_VERSIONS = ("4.1.", "4.2.")
MAX_REASON_BYTES = 123  # a close frame's payload is at most 125 bytes, 2 of them the code


def _server_close(self, code=None, reason=None):
    """Close with any valid code and a reason, bypassing autobahn's application-code filter."""
    code = 1000 if code is None else code
    reason_bytes = encode_truncate(reason, MAX_REASON_BYTES) if reason else None
    self.sendCloseFrame(code=code, reasonUtf8=reason_bytes, isReply=False)


def _handle_reply_factory(original):
    def handle_reply(self, message):
        if message.get("type") == "websocket.close" and self.state != self.STATE_CONNECTING:
            return self.serverClose(code=message.get("code"), reason=message.get("reason"))
        return original(self, message)

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


def _access_log_factory(original):
    def write_entry(self, host, date, request, status=None, length=None, ident=None, user=None):
        request = redact(request)  # the logging filter's rule: JWTs and credential parameters
        return original(self, host, date, request, status, length, ident, user)

    return write_entry


def install(*, max_message_bytes: int) -> bool:
    """Patch daphne once per process; False (and a warning) when daphne is absent or unknown."""
    try:
        import daphne
        from daphne.access import AccessLogGenerator
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:
        return False
    if getattr(WebSocketProtocol, "_switchboard_compat", False):
        return True
    if not daphne.__version__.startswith(COVERED_VERSIONS):
        logger.warning(
            "daphne %s is not covered by realtime.daphne_compat (covers %s); close codes "
            "1003/1008/1009 and close reasons may not reach clients",
            daphne.__version__,
            ", ".join(v + "x" for v in COVERED_VERSIONS),
        )
        return False
    WebSocketProtocol.serverClose = _server_close
    WebSocketProtocol.handle_reply = _handle_reply_factory(WebSocketProtocol.handle_reply)
    WebSocketProtocol.onMessageFrameBegin = _frame_begin_factory(
        WebSocketProtocol.onMessageFrameBegin, max_message_bytes
    )
    AccessLogGenerator.write_entry = _access_log_factory(AccessLogGenerator.write_entry)
    WebSocketProtocol._switchboard_compat = True
    return True
