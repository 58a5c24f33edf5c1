"""docs/asyncapi.yaml stays true: every message type, field, error code and close code."""

import ast
from pathlib import Path

import msgspec
import pytest
import yaml

from realtime.protocol.codes import CloseCode, ErrorCode
from realtime.protocol.frames import Auth
from realtime.rooms import fanout as room_fanout
from realtime.session import base, consumer, credentials, handlers
from realtime.session.consumer import SessionConsumer

ROOT = Path(__file__).resolve().parents[4]
DOC = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
MESSAGES = DOC["components"]["messages"]


def documented(direction: str) -> dict[str, dict]:
    """{frame type: payload schema} of the documented messages in one direction."""
    return {
        message["payload"]["properties"]["type"]["const"]: message["payload"]
        for message in MESSAGES.values()
        if message.get("x-direction") == direction
    }


def server_frame_types() -> set[str]:
    """Every literal frame type the server sends: the session's `send_frame("kind", …)` (its
    consumer, handlers and credential timers), and the room fan-out's `frame_encode("kind", …)`
    (one encoding for all local subscribers)."""
    senders = [
        (base, "send_frame"),
        (consumer, "send_frame"),
        (handlers, "send_frame"),
        (credentials, "send_frame"),
        (room_fanout, "frame_encode"),
    ]
    return {
        node.args[0].value
        for module, call in senders
        for node in ast.walk(ast.parse(Path(module.__file__).read_text()))
        if isinstance(node, ast.Call)
        and getattr(node.func, "attr", getattr(node.func, "id", None)) == call
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }


def test_the_client_message_types_are_the_consumers():
    assert (
        set(documented("client")) == set(SessionConsumer.schemas) == set(SessionConsumer.handlers)
    )


def test_the_first_frame_auth_message_matches_its_schema():
    payload = documented("client-first")["auth"]
    fields = msgspec.structs.fields(Auth)
    assert set(documented("client-first")) == {"auth"}
    assert set(payload["properties"]) == {field.name for field in fields}
    assert set(payload["required"]) == {f.name for f in fields if f.required}


@pytest.mark.parametrize("kind", sorted(SessionConsumer.schemas))
def test_each_client_messages_fields_match_its_schema(kind):
    payload = documented("client")[kind]
    fields = msgspec.structs.fields(SessionConsumer.schemas[kind])
    assert set(payload["properties"]) == {field.name for field in fields}
    required = {f.name for f in fields if f.required}
    assert set(payload["required"]) == required


def test_the_server_frame_types_are_the_ones_the_consumers_send():
    assert set(documented("server")) == server_frame_types()


def test_the_error_codes_are_the_protocols():
    enum = MESSAGES["error"]["payload"]["properties"]["code"]["enum"]
    assert enum == [str(code) for code in ErrorCode]
    assert set(DOC["x-error-codes"]) == {str(code) for code in ErrorCode}


def test_the_close_codes_and_reasons_are_the_protocols():
    assert {int(code): entry["reason"] for code, entry in DOC["x-close-codes"].items()} == {
        int(code): code.reason for code in CloseCode
    }
