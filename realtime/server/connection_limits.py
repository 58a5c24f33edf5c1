"""The limits every server adapter holds a WebSocket connection to, below the application:
the control-frame rate (pings and pongs) and the send backlog, and the security-log lines
that say when one is hit. daphne's adapter and uvicorn's share them, so that a client meets
the same rule, and an operator reads the same line, on either server."""

import logging
from dataclasses import dataclass

from django.conf import settings

from realtime.protocol.codes import CloseCode
from realtime.session.limits import TokenBucket, WindowCounter

security_log = logging.getLogger("switchboard.security")

SLOW_CLIENT_CLOSE_WAIT = 10.0  # seconds a shed client gets to read up to its close frame
# Fragments one message may come in (browsers send one): empty continuation frames never
# reach the size limit, and a message that never ends is never counted against the rate.
MAX_FRAGMENTS = 1024
# The close a protocol failure sends, with its documented reason (a server library's own
# reasons quote octet offsets and opcodes; they go to the log).
FAIL_CLOSES = {
    int(code): code
    for code in (CloseCode.PROTOCOL_ERROR, CloseCode.INVALID_PAYLOAD, CloseCode.MESSAGE_TOO_BIG)
}


@dataclass(frozen=True)
class ControlFrameLimits:
    """The pings and pongs one connection may send: `rate` a second, `burst` at once; more
    than `burst` over the rate within `window` seconds is a flood (closed 4008)."""

    rate: float
    burst: int
    window: float

    @classmethod
    def from_settings(cls) -> "ControlFrameLimits":
        """The message rate's limits (WS_MESSAGES_PER_SECOND, WS_MESSAGE_BURST,
        WS_RATE_ABUSE_WINDOW), which control frames share."""
        return cls(
            rate=settings.WS_MESSAGES_PER_SECOND,
            burst=settings.WS_MESSAGE_BURST,
            window=settings.WS_RATE_ABUSE_WINDOW,
        )


class ControlFrameCounter:
    """One connection's pings and pongs against its `ControlFrameLimits`; made on the first
    control frame, so that a connection that sends none carries nothing."""

    __slots__ = ("bucket", "abuse")

    def __init__(self, limits: ControlFrameLimits) -> None:
        self.bucket = TokenBucket(rate=limits.rate, burst=limits.burst)
        self.abuse = WindowCounter(limit=limits.burst, window=limits.window)

    def count(self) -> tuple[bool, bool]:
        """Count one control frame: (whether it is within the rate, so a ping is answered;
        whether the connection is flooding and must be closed 4008)."""
        if self.bucket.take():
            return True, False
        return False, self.abuse.hit()


def control_flood_log(path: object, client: object) -> None:
    security_log.warning(
        "websocket control frame flood, closing %d: path=%s client=%s",
        CloseCode.RATE_LIMITED,
        path,
        client,
    )


def slow_client_log(backlog: int, limit: int, path: object, client: object) -> None:
    security_log.warning(
        "slow client: %d bytes queued for sending (limit %d), closing %d: path=%s client=%s",
        backlog,
        limit,
        CloseCode.SLOW_CLIENT,
        path,
        client,
    )


def protocol_failure_log(why: str, code: int, path: object, client: object) -> None:
    security_log.warning(
        "websocket protocol failure (%s), closing %d: path=%s client=%s", why, code, path, client
    )


def message_too_big_log(why: str, path: object, client: object) -> None:
    """`why`: what the server saw ("70000 > 65536 bytes")."""
    security_log.warning(
        "websocket message too big (%s), closing %d: path=%s client=%s",
        why,
        CloseCode.MESSAGE_TOO_BIG,
        path,
        client,
    )
