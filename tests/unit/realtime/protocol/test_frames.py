"""realtime.protocol.frames: frame decoding and encoding, error frames, close codes."""

import json

import pytest

from realtime.protocol.codes import CloseCode, ErrorCode
from realtime.protocol.frames import Echo, Ping, ProtocolError, Refresh, frame_decode, frame_encode

SCHEMAS = {"echo": Echo, "ping": Ping, "refresh": Refresh}


def decode_error(text: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as error:
        frame_decode(text, SCHEMAS)
    return error.value


def test_a_ping_decodes_to_its_struct():
    assert frame_decode('{"type":"ping"}', SCHEMAS) == Ping(type="ping")


def test_an_echo_decodes_with_its_data_and_id():
    message = frame_decode('{"type":"echo","data":{"a":[1,null]},"id":"x"}', SCHEMAS)

    assert message == Echo(type="echo", data={"a": [1, None]}, id="x")


def test_a_refresh_decodes_with_its_token():
    message = frame_decode('{"type":"refresh","token":"abc","id":3}', SCHEMAS)

    assert message == Refresh(type="refresh", token="abc", id=3)


@pytest.mark.parametrize("text", ["", "{", "not json", '{"type":"ping"} trailing', "\ud800"])
def test_text_that_is_not_json_is_invalid_json(text):
    error = decode_error(text)

    assert (error.code, error.message, error.msg_id) == (
        ErrorCode.INVALID_JSON,
        "Frame is not valid JSON",
        None,
    )


@pytest.mark.parametrize("text", ["[]", "1", '"ping"', "null", "true"])
def test_json_that_is_not_an_object_is_an_invalid_message(text):
    error = decode_error(text)

    assert (error.code, error.message) == (
        ErrorCode.INVALID_MESSAGE,
        "Message must be a JSON object",
    )


@pytest.mark.parametrize("text", ['{"data":1}', '{"type":5}', '{"type":null}', '{"type":["ping"]}'])
def test_a_missing_or_non_string_type_is_an_invalid_message(text):
    error = decode_error(text)

    assert (error.code, error.message) == (
        ErrorCode.INVALID_MESSAGE,
        "Field `type` must be a string",
    )


def test_an_unknown_type_is_named_in_the_error():
    error = decode_error('{"type":"dance","id":"d1"}')

    assert (error.code, error.message, error.msg_id) == (
        ErrorCode.UNKNOWN_TYPE,
        "Unknown message type: dance",
        "d1",
    )


def test_a_long_unknown_type_is_cut_to_40_characters_in_the_error():
    error = decode_error(json.dumps({"type": "x" * 500}))

    assert error.message == "Unknown message type: " + "x" * 40


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"type": "echo"}, "Object missing required field `data`"),
        ({"type": "refresh"}, "Object missing required field `token`"),
        ({"type": "refresh", "token": 5}, "Expected `str`, got `int` - at `$.token`"),
        ({"type": "ping", "extra": 1}, "Object contains unknown field `extra`"),
        ({"type": "ping", "id": 1.5}, "Expected `int | str | null`, got `float` - at `$.id`"),
        ({"type": "ping", "id": True}, "Expected `int | str | null`, got `bool` - at `$.id`"),
        ({"type": "ping", "id": [1]}, "Expected `int | str | null`, got `array` - at `$.id`"),
    ],
)
def test_a_missing_mistyped_or_unknown_field_is_an_invalid_message(message, expected):
    error = decode_error(json.dumps(message))

    assert (error.code, error.message) == (ErrorCode.INVALID_MESSAGE, expected)


@pytest.mark.parametrize(("msg_id", "copied"), [("a", "a"), (7, 7), (0, 0), ("", "")])
def test_a_string_or_integer_id_is_kept_for_the_error(msg_id, copied):
    error = decode_error(json.dumps({"type": "echo", "id": msg_id}))

    assert error.msg_id == copied


@pytest.mark.parametrize("msg_id", [True, False, 1.5, None, {"a": 1}, [1]])
def test_an_id_that_is_not_a_string_or_integer_is_not_kept(msg_id):
    error = decode_error(json.dumps({"type": "dance", "id": msg_id}))

    assert error.msg_id is None


def test_deeply_nested_json_is_an_invalid_message_not_a_crash():
    error = decode_error("[" * 100_000 + "]" * 100_000)

    assert (error.code, error.message) == (
        ErrorCode.INVALID_MESSAGE,
        "Message is nested too deeply",
    )


def test_frame_encode_puts_type_first_and_id_last():
    text = frame_encode("echo", 7, data={"b": 1})

    assert text == '{"type":"echo","data":{"b":1},"id":7}'


def test_frame_encode_leaves_out_a_missing_id():
    assert frame_encode("pong") == '{"type":"pong"}'


def test_frame_encode_keeps_a_zero_or_empty_id():
    assert json.loads(frame_encode("pong", 0)) == {"type": "pong", "id": 0}
    assert json.loads(frame_encode("pong", "")) == {"type": "pong", "id": ""}


def test_every_error_code_has_a_message():
    assert {str(code) for code in ErrorCode} == {
        "invalid_json",
        "invalid_message",
        "unknown_type",
        "rate_limited",
        "unauthorized",
        "token_expired",
        "session_revoked",
        "unavailable",
        "internal_error",
        "invalid_channel",
        "forbidden",
        "history_unavailable",
        "too_many_subscriptions",
        "too_many_sessions",
    }
    for code in ErrorCode:
        assert code.message


def test_close_codes_are_the_documented_ones_with_short_reasons():
    assert {code: code.reason for code in CloseCode} == {
        1000: "normal closure",
        1001: "server going away",
        1002: "protocol error",
        1003: "binary frames are not supported",
        1007: "invalid UTF-8",
        1008: "too many protocol errors",
        1009: "message too big",
        1011: "internal error",
        1012: "service restart",
        1013: "try again later",
        4001: "token expired",
        4008: "rate limited",
        4009: "slow client",
        4500: "unauthorized",
        4501: "session revoked",
        4502: "too many sessions",
    }
    assert all(len(reason.encode()) < 120 for reason in (code.reason for code in CloseCode))


def test_close_codes_follow_the_reconnect_rule():
    may_reconnect = {c for c in CloseCode if 4000 <= c < 4500}
    must_not = {c for c in CloseCode if 4500 <= c < 5000}

    assert may_reconnect == {
        CloseCode.TOKEN_EXPIRED,
        CloseCode.RATE_LIMITED,
        CloseCode.SLOW_CLIENT,
    }
    assert must_not == {
        CloseCode.UNAUTHORIZED,
        CloseCode.SESSION_REVOKED,
        CloseCode.TOO_MANY_SESSIONS,
    }


def test_a_close_code_may_reconnect_exactly_when_the_python_client_reconnects_on_it():
    from switchboard_client.errors import CloseAction, close_action

    assert {code for code in CloseCode if code.reconnect} == {
        CloseCode.GOING_AWAY,
        CloseCode.INTERNAL_ERROR,
        CloseCode.SERVICE_RESTART,
        CloseCode.TRY_AGAIN_LATER,
        CloseCode.TOKEN_EXPIRED,
        CloseCode.RATE_LIMITED,
        CloseCode.SLOW_CLIENT,
    }
    assert {code for code in CloseCode if close_action(int(code)) is not CloseAction.STOP} == {
        code for code in CloseCode if code.reconnect
    }


def test_a_refused_handshake_closes_with_its_error_codes_refusal():
    from realtime.protocol.codes import refusal_for

    assert refusal_for("token_expired") == (
        ErrorCode.TOKEN_EXPIRED,
        CloseCode.TOKEN_EXPIRED,
        "expired",
    )
    assert refusal_for("unavailable") == (
        ErrorCode.UNAVAILABLE,
        CloseCode.TRY_AGAIN_LATER,
        "unavailable",
    )
    # Not a refusal (or not a code at all): unauthorized.
    for code in ("unauthorized", "forbidden", "no_such_code"):
        assert refusal_for(code) == (ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED, "unauthorized")


def test_every_credential_error_accounts_raises_is_an_error_code_a_handshake_is_refused_with():
    from accounts.tokens import AuthUnavailable, TokenExpired, TokenRejected

    for error in (TokenRejected, TokenExpired, AuthUnavailable):
        assert ErrorCode(error.code).refusal is not None, error
