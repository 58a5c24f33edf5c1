"""WebSocket test helpers: open sockets on the real ASGI application and read what they send."""

from channels.testing import WebsocketCommunicator

from realtime.protocol.codes import CloseCode, ErrorCode


async def receive_close(socket: WebsocketCommunicator, wait: float = 1) -> tuple[int, str]:
    """The next thing the server sends must be a close: its (code, reason)."""
    message = await socket.receive_output(wait)
    assert message["type"] == "websocket.close", message
    return message.get("code"), message.get("reason")


async def assert_closed(socket: WebsocketCommunicator, code: CloseCode, wait: float = 1) -> None:
    """The server closes with `code` and its documented reason, and sends nothing after."""
    assert await receive_close(socket, wait) == (int(code), code.reason)
    assert await socket.receive_nothing(0.05)


async def assert_error_then_closed(
    socket: WebsocketCommunicator, error: ErrorCode, code: CloseCode, wait: float = 1
) -> None:
    """An error frame with the code's standard message, then the close."""
    assert await socket.receive_json_from(wait) == {
        "type": "error",
        "code": str(error),
        "message": error.message,
    }
    await assert_closed(socket, code)
