"""The codes of the `/ws/session/` protocol, each defined once with everything said about it.

A close code carries its reason text and whether a client may reconnect; an error code its
message, whether it is the client's mistake, and how a handshake refused with it ends. The
documentation tables, metric label sets, log texts and the daphne adapter derive from these
(centrifuge's `Disconnect{Code, Reason}` values, in Python enums).

Close codes follow one rule: 4000-4499 mean "you may reconnect after doing what the code
says"; 4500-4999 mean "do not reconnect with the same credentials".
"""

from enum import IntEnum, StrEnum


class CloseCode(IntEnum):
    """WebSocket close codes Switchboard sends: the code, its reason text, and whether a
    client may reconnect (after what the documentation's table says: back off, refresh)."""

    reason: str
    reconnect: bool

    def __new__(cls, code: int, reason: str, reconnect: bool) -> "CloseCode":
        member = int.__new__(cls, code)
        member._value_ = code
        member.reason = reason
        member.reconnect = reconnect
        return member

    NORMAL = 1000, "normal closure", False
    GOING_AWAY = 1001, "server going away", True
    PROTOCOL_ERROR = 1002, "protocol error", False
    UNSUPPORTED_DATA = 1003, "binary frames are not supported", False
    INVALID_PAYLOAD = 1007, "invalid UTF-8", False
    POLICY_VIOLATION = 1008, "too many protocol errors", False
    MESSAGE_TOO_BIG = 1009, "message too big", False
    INTERNAL_ERROR = 1011, "internal error", True
    SERVICE_RESTART = 1012, "service restart", True  # sent by uvicorn on SIGTERM
    TRY_AGAIN_LATER = 1013, "try again later", True
    TOKEN_EXPIRED = 4001, "token expired", True
    RATE_LIMITED = 4008, "rate limited", True
    SLOW_CLIENT = 4009, "slow client", True
    UNAUTHORIZED = 4500, "unauthorized", False
    SESSION_REVOKED = 4501, "session revoked", False
    TOO_MANY_SESSIONS = 4502, "too many sessions", False


class ErrorCode(StrEnum):
    """The `code` of an `{"type":"error"}` frame. Clients branch on this, never on the text.

    Each carries its message; `client_mistake` (False for the server's own state, which does
    not count toward the protocol-error limit that closes a session with 1008); and, for the
    codes a handshake can be refused with, `refusal`: the close code and the
    connection-outcome metric label (`switchboard_ws_connections_total{outcome}`).
    """

    message: str
    client_mistake: bool
    refusal: tuple[CloseCode, str] | None

    def __new__(
        cls,
        code: str,
        message: str,
        client_mistake: bool = True,
        refusal: tuple[CloseCode, str] | None = None,
    ) -> "ErrorCode":
        member = str.__new__(cls, code)
        member._value_ = code
        member.message = message
        member.client_mistake = client_mistake
        member.refusal = refusal
        return member

    INVALID_JSON = "invalid_json", "Frame is not valid JSON"
    INVALID_MESSAGE = "invalid_message", "Message is not valid"
    UNKNOWN_TYPE = "unknown_type", "Unknown message type"
    RATE_LIMITED = "rate_limited", "Too many messages; this one was dropped"
    UNAUTHORIZED = (
        "unauthorized",
        "Unauthorized",
        True,
        (CloseCode.UNAUTHORIZED, "unauthorized"),
    )
    TOKEN_EXPIRED = (  # noqa: S105  (a code, not a secret)
        "token_expired",
        "Token Expired",
        True,
        (CloseCode.TOKEN_EXPIRED, "expired"),
    )
    SESSION_REVOKED = "session_revoked", "Session revoked"
    UNAVAILABLE = (
        "unavailable",
        "Temporarily unavailable; try again later",
        False,
        (CloseCode.TRY_AGAIN_LATER, "unavailable"),
    )
    INTERNAL_ERROR = "internal_error", "Internal error; the request was not completed", False
    INVALID_CHANNEL = (
        "invalid_channel",
        "Channel names are 1-80 characters of A-Z a-z 0-9 _ . -",
    )
    FORBIDDEN = "forbidden", "Not allowed on this channel"
    HISTORY_UNAVAILABLE = "history_unavailable", "This channel keeps no history"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions", "Too many subscriptions on this connection"
    TOO_MANY_SESSIONS = (
        "too_many_sessions",
        "Too many open sessions for this user; close one first",
        True,
        (CloseCode.TOO_MANY_SESSIONS, "too_many_sessions"),
    )


def refusal_for(code: str) -> tuple[ErrorCode, CloseCode, str]:
    """How a handshake refused with the credential error `code` (accounts' `TokenRejected.code`)
    ends: the error frame's code, the close code and the outcome label; any code that is not a
    refusal answers `unauthorized`."""
    error = ErrorCode._value2member_map_.get(code)
    if not isinstance(error, ErrorCode) or error.refusal is None:
        error = ErrorCode.UNAUTHORIZED
    assert error.refusal is not None
    close, outcome = error.refusal
    return error, close, outcome
