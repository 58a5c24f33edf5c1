"""Typed exceptions of the client, and which close codes lead to a reconnect and which stop it.

The server's rule: 4000-4499 "reconnect after doing what the code says", 4500-4999 "do not
reconnect with the same credentials". This module turns that rule into a `CloseAction`
(`close_action`) and a fatal close into its exception (`close_error`).
"""

import socket
from enum import Enum, StrEnum

import httpx


class SwitchboardError(Exception):
    """Base of every exception this client raises on purpose."""


class SwitchboardClosed(SwitchboardError):
    """The server closed the session and the client will not reconnect: `code`, `reason`."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"closed {code}: {reason}" if reason else f"closed {code}")
        self.code = code
        self.reason = reason


class TokenExpired(SwitchboardClosed):
    """4001, and no new access token could be had (refresh token dead, no password)."""


class Unauthorized(SwitchboardClosed):
    """4500: credentials refused (also a REST login refused with 401: `reason` is its code)."""


class LoginRefused(Unauthorized):
    """`POST /api/auth/token/` answered 401: bad username or password. `status` (401) and
    `reason` (the body's code, `bad_credentials`); an Unauthorized (code 4500) as before, for
    the callers that catch that."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(4500, reason)
        self.args = (f"login refused: bad username or password (HTTP {status} {reason})",)
        self.status = status


class SessionRevoked(SwitchboardClosed):
    """4501: the user's tokens were revoked, or an operator disconnected this session."""


class TooManySessions(SwitchboardClosed):
    """4502: the user already has the most sessions the server allows."""


class ConnectionLost(SwitchboardError):
    """The connection dropped (`code` None when no close frame came, e.g. unreachable).

    Raised in a request that was sent but not answered when the connection dropped (it may
    or may not have been carried out; the client never resends), and by the first connect.
    """

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"connection lost ({code}): {reason}" if reason else f"lost ({code})")
        self.code = code
        self.reason = reason


class ServerUnreachable(ConnectionLost):
    """No connection could be made to the server at `url` (its scheme, host and port): `why`
    says how in words ("connection refused", "host not found", "timed out"). A ConnectionLost
    without a code, so reconnect loops treat it as transient."""

    def __init__(self, url: str, why: str, reason: str = "") -> None:
        super().__init__(None, reason or why)
        self.args = (f"cannot reach {url}: {why}",)
        self.url = url
        self.why = why


def unreachable_why(error: BaseException) -> str:
    """Why a connection attempt failed, in words, from the innermost cause that says it
    (httpx and websockets wrap the socket's own error)."""
    causes: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in causes:
        causes.append(current)
        current = current.__cause__ or current.__context__
    for cause in reversed(causes):  # innermost first
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "host not found"
        if isinstance(cause, TimeoutError | httpx.TimeoutException):
            return "timed out"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
    return str(causes[0]) or type(causes[0]).__name__


class HandshakeRefused(SwitchboardError):
    """The WebSocket handshake was answered with an HTTP error `status` (403: origin or path)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"WebSocket handshake refused with HTTP {status}")
        self.status = status


class RequestError(SwitchboardError):
    """The server answered a request with `{"type":"error","code":…,"message":…}`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RateLimited(RequestError):
    """`rate_limited`: the server dropped the request unread (too many frames per second)."""


class RestError(SwitchboardError):
    """A REST call failed other than with 401: `status`, and the body's `code` and `detail`."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"HTTP {status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


class ClientClosed(SwitchboardError):
    """The client was closed (`aclose()`, or leaving `async with`) before the call finished."""


class MissReason(StrEnum):
    """Why some messages of a room may be missing."""

    NOT_RECOVERED = "not_recovered"  # resubscribed with `since`: the server could not replay
    EPOCH_CHANGED = "epoch_changed"  # the channel's history was lost: a new epoch began


class MessagesMissed(SwitchboardError):
    """Some messages of `channel` may be missing: a resubscribe answered `recovered: false`,
    or a message came in a new epoch (the history was lost). `reason` says which; `epoch` and
    `offset` are where the room's stream goes on from (None in a channel without history).
    Raised once by each of the room's subscriptions, after which iteration goes on."""

    def __init__(
        self, channel: str, reason: MissReason, *, epoch: str | None, offset: int | None
    ) -> None:
        super().__init__(f"some messages may be missing in {channel}")
        self.channel = channel
        self.reason = reason
        self.epoch = epoch
        self.offset = offset


class CloseAction(Enum):
    """What the client does after the server closes the connection."""

    RECONNECT = "reconnect"  # with backoff
    REFRESH = "refresh"  # renew the access token, then reconnect with backoff
    STOP = "stop"  # raise close_error(code, reason)


# 1001 going away, 1006 dropped (no close frame), 1011 internal error, 1012 service restart
# (uvicorn's on SIGTERM), 1013 try again later.
RECONNECT_CODES = frozenset({1001, 1006, 1011, 1012, 1013})
TOKEN_EXPIRED = 4001

_FATAL_TYPES: dict[int, type[SwitchboardClosed]] = {
    4500: Unauthorized,
    4501: SessionRevoked,
    4502: TooManySessions,
}


def close_action(code: int | None) -> CloseAction:
    """The policy: 4001 refresh first; 1001/1006/1011/1012/1013 and 4000-4499 reconnect; anything
    else (4500-4999, 1000, 1003, 1008, 1009, unknown codes) stops."""
    if code is None:
        return CloseAction.RECONNECT  # the connection dropped without a close frame (1006)
    if code == TOKEN_EXPIRED:
        return CloseAction.REFRESH
    if code in RECONNECT_CODES or 4000 <= code <= 4499:
        return CloseAction.RECONNECT
    return CloseAction.STOP


def close_error(code: int | None, reason: str = "") -> SwitchboardClosed:
    """The exception for a close the client does not recover from (typed by code)."""
    if code == TOKEN_EXPIRED:
        return TokenExpired(code, reason)
    # No code (None) is simply not in the table.
    return _FATAL_TYPES.get(code, SwitchboardClosed)(code, reason)  # type: ignore[arg-type]


def request_error(*, code: str, message: str) -> RequestError:
    """The exception for an error reply (`RateLimited` for `rate_limited`)."""
    kind = RateLimited if code == "rate_limited" else RequestError
    return kind(code, message)
