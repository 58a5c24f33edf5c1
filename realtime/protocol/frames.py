"""The `/ws/session/` frames: client message schemas, decoding and encoding, defined once.

The codes these frames carry are in `realtime.protocol.codes`.
"""

from typing import Annotated, Any, Protocol, cast

import msgspec

from realtime.protocol.codes import ErrorCode

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
    """A request about one room: unsubscribe, presence."""

    type: str
    channel: str
    id: MessageId = None


class Since(msgspec.Struct, forbid_unknown_fields=True):
    """A subscriber's last position in a room with history (`subscribe`'s `since`)."""

    offset: Annotated[int, msgspec.Meta(ge=0)]
    epoch: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class Subscribe(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    channel: str
    since: Since | None = None
    id: MessageId = None


class History(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    channel: str
    limit: Annotated[int, msgspec.Meta(ge=1)] | None = None
    id: MessageId = None


class Unsubscribe(ChannelRequest):
    pass


class Presence(ChannelRequest):
    pass


class Publish(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    channel: str
    data: Any
    id: MessageId = None


class ClientMessage(Protocol):
    """What every client message has (each schema above)."""

    type: str
    id: MessageId


class ProtocolError(Exception):
    """A client frame the session answers with an error and then carries on."""

    def __init__(self, code: ErrorCode, message: str | None = None, msg_id: MessageId = None):
        super().__init__(code)
        self.code = code
        self.message = message or code.message
        self.msg_id = msg_id


_json_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def frame_decode(text: str, schemas: dict[str, type[msgspec.Struct]]) -> ClientMessage:
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
        message = cast(ClientMessage, msgspec.convert(obj, schema))
    except msgspec.ValidationError as e:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, str(e)[:200], msg_id) from e
    return message


def frame_encode(kind: str, msg_id: MessageId = None, **fields: Any) -> str:
    """Serialize one server frame: `type` first, then the fields, then `id` when given."""
    payload: dict[str, Any] = {"type": kind, **fields}
    if msg_id is not None:
        payload["id"] = msg_id
    return _encoder.encode(payload).decode()
