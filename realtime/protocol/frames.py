"""The `/ws/session/` protocol: message schemas, error codes and close codes, defined once.

Close codes follow one rule: 4000-4499 mean "you may reconnect after doing what the code
says"; 4500-4999 mean "do not reconnect with the same credentials".
"""

from enum import IntEnum, StrEnum
from typing import Any

import msgspec


class ErrorCode(StrEnum):
    """The `code` of an `{"type":"error"}` frame. Clients branch on this, never on the text."""

    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_TYPE = "unknown_type"
    RATE_LIMITED = "rate_limited"
    UNAUTHORIZED = "unauthorized"
    TOKEN_EXPIRED = "token_expired"  # noqa: S105  (a code, not a secret)
    SESSION_REVOKED = "session_revoked"
    UNAVAILABLE = "unavailable"
    INTERNAL_ERROR = "internal_error"
    INVALID_CHANNEL = "invalid_channel"
    FORBIDDEN = "forbidden"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    TOO_MANY_SESSIONS = "too_many_sessions"


ERROR_MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.INVALID_JSON: "Frame is not valid JSON",
    ErrorCode.INVALID_MESSAGE: "Message is not valid",
    ErrorCode.UNKNOWN_TYPE: "Unknown message type",
    ErrorCode.RATE_LIMITED: "Too many messages; this one was dropped",
    ErrorCode.UNAUTHORIZED: "Unauthorized",
    ErrorCode.TOKEN_EXPIRED: "Token Expired",
    ErrorCode.SESSION_REVOKED: "Session revoked",
    ErrorCode.UNAVAILABLE: "Temporarily unavailable; try again later",
    ErrorCode.INTERNAL_ERROR: "Internal error; the request was not completed",
    ErrorCode.INVALID_CHANNEL: "Channel names are 1-80 characters of A-Z a-z 0-9 _ . -",
    ErrorCode.FORBIDDEN: "Not allowed on this channel",
    ErrorCode.TOO_MANY_SUBSCRIPTIONS: "Too many subscriptions on this connection",
    ErrorCode.TOO_MANY_SESSIONS: "Too many open sessions for this user; close one first",
}

# Errors that are the server's state, not the client's mistake: they do not count toward
# the protocol-error limit that closes a session with 1008.
NOT_CLIENT_MISTAKES = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.INTERNAL_ERROR})


class CloseCode(IntEnum):
    """WebSocket close codes Switchboard sends, each with a short reason text."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    TOKEN_EXPIRED = 4001
    RATE_LIMITED = 4008
    SLOW_CLIENT = 4009
    UNAUTHORIZED = 4500
    SESSION_REVOKED = 4501
    TOO_MANY_SESSIONS = 4502

    @property
    def reason(self) -> str:
        return CLOSE_REASONS[self]


CLOSE_REASONS: dict[CloseCode, str] = {
    CloseCode.NORMAL: "normal closure",
    CloseCode.GOING_AWAY: "server going away",
    CloseCode.PROTOCOL_ERROR: "protocol error",
    CloseCode.UNSUPPORTED_DATA: "binary frames are not supported",
    CloseCode.INVALID_PAYLOAD: "invalid UTF-8",
    CloseCode.POLICY_VIOLATION: "too many protocol errors",
    CloseCode.MESSAGE_TOO_BIG: "message too big",
    CloseCode.INTERNAL_ERROR: "internal error",
    CloseCode.TRY_AGAIN_LATER: "try again later",
    CloseCode.TOKEN_EXPIRED: "token expired",
    CloseCode.RATE_LIMITED: "rate limited",
    CloseCode.SLOW_CLIENT: "slow client",
    CloseCode.UNAUTHORIZED: "unauthorized",
    CloseCode.SESSION_REVOKED: "session revoked",
    CloseCode.TOO_MANY_SESSIONS: "too many sessions",
}


# ---------------------------------------------------------------------------
# Client messages. `id` (string or integer) is optional and copied into the reply.
# ---------------------------------------------------------------------------
MessageId = str | int | None


class Echo(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    data: Any
    id: MessageId = None


class Ping(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    id: MessageId = None


class Refresh(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    token: str
    id: MessageId = None


class Auth(msgspec.Struct, forbid_unknown_fields=True):
    """The first frame of a connection that brought no credential."""

    type: str
    token: str
    id: MessageId = None


class ChannelRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A request about one room: subscribe, unsubscribe, presence."""

    type: str
    channel: str
    id: MessageId = None


class Subscribe(ChannelRequest):
    pass


class Unsubscribe(ChannelRequest):
    pass


class Presence(ChannelRequest):
    pass


class Publish(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    channel: str
    data: Any
    id: MessageId = None


class ProtocolError(Exception):
    """A client frame the session answers with an error and then carries on."""

    def __init__(self, code: ErrorCode, message: str | None = None, msg_id: MessageId = None):
        super().__init__(code)
        self.code = code
        self.message = message or ERROR_MESSAGES[code]
        self.msg_id = msg_id


_json_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def frame_decode(text: str, schemas: dict[str, type[msgspec.Struct]]) -> msgspec.Struct:
    """Parse one client text frame into its message struct, or raise ProtocolError."""
    try:
        obj = _json_decoder.decode(text)
    except msgspec.ValidationError as e:  # valid JSON it cannot hold: a number out of range
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "A number is out of range") from e
    except (msgspec.DecodeError, UnicodeEncodeError) as e:  # lone surrogates cannot be UTF-8
        raise ProtocolError(ErrorCode.INVALID_JSON) from e
    except RecursionError as e:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "Message is nested too deeply") from e
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "Message must be a JSON object")
    msg_id = obj.get("id")
    if not isinstance(msg_id, str | int) or isinstance(msg_id, bool):
        msg_id = None
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "Field `type` must be a string", msg_id)
    schema = schemas.get(kind)
    if schema is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"Unknown message type: {kind[:40]}", msg_id)
    try:
        return msgspec.convert(obj, schema)
    except msgspec.ValidationError as e:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, str(e)[:200], msg_id) from e


def frame_encode(kind: str, msg_id: MessageId = None, **fields: Any) -> str:
    """Serialize one server frame: `type` first, then the fields, then `id` when given."""
    payload: dict[str, Any] = {"type": kind, **fields}
    if msg_id is not None:
        payload["id"] = msg_id
    return _encoder.encode(payload).decode()
