"""realtime.session.consumer.EchoConsumer: `/ws/echo/`, anonymous."""

import pytest

from realtime.protocol.codes import CloseCode
from tests.unit.realtime.ws import assert_closed


async def test_a_text_frame_comes_back_behind_the_default_prefix(connect):
    socket = await connect("/ws/echo/")

    await socket.send_to(text_data="hello")

    assert socket.accepted is True
    assert await socket.receive_from() == "Server received: hello"


async def test_unicode_text_comes_back_unchanged_behind_the_prefix(connect):
    socket = await connect("/ws/echo/")

    await socket.send_to(text_data='héllo ✓ 😀 {"not": "parsed"}')

    assert await socket.receive_from() == 'Server received: héllo ✓ 😀 {"not": "parsed"}'


async def test_the_prefix_comes_from_ws_echo_prefix(connect, settings):
    settings.WS_ECHO_PREFIX = "echo> "
    socket = await connect("/ws/echo/")

    await socket.send_to(text_data="hello")

    assert await socket.receive_from() == "echo> hello"


async def test_an_empty_prefix_is_a_plain_echo(connect, settings):
    settings.WS_ECHO_PREFIX = ""
    socket = await connect("/ws/echo/")

    await socket.send_to(text_data="hello")

    assert await socket.receive_from() == "hello"


async def test_a_binary_frame_comes_back_unchanged_as_binary(connect):
    socket = await connect("/ws/echo/")
    payload = bytes(range(256))

    await socket.send_to(bytes_data=payload)

    assert await socket.receive_from() == payload


async def test_echo_needs_no_token_and_ignores_a_bad_one(connect):
    socket = await connect("/ws/echo/?token=garbage")

    await socket.send_to(text_data="hi")

    assert socket.accepted is True
    assert await socket.receive_from() == "Server received: hi"


async def test_above_the_message_rate_the_socket_is_closed_4008(connect, settings):
    settings.WS_MESSAGE_BURST = 3
    settings.WS_MESSAGES_PER_SECOND = 0.01
    socket = await connect("/ws/echo/")

    for i in range(3):
        await socket.send_to(text_data=f"m{i}")
        assert await socket.receive_from() == f"Server received: m{i}"
    await socket.send_to(text_data="one too many")

    await assert_closed(socket, CloseCode.RATE_LIMITED)


async def test_later_frames_after_a_rate_close_are_ignored(connect, settings):
    settings.WS_MESSAGE_BURST = 1
    settings.WS_MESSAGES_PER_SECOND = 0.01
    socket = await connect("/ws/echo/")
    await socket.send_to(text_data="a")
    await socket.receive_from()
    await socket.send_to(text_data="b")
    await assert_closed(socket, CloseCode.RATE_LIMITED)

    await socket.send_to(text_data="c")

    assert await socket.receive_nothing(0.05)


@pytest.mark.parametrize(
    "frame",
    [{"text_data": "x" * 65}, {"bytes_data": b"x" * 65}, {"text_data": "é" * 33}],
    ids=["text", "binary", "multibyte_text"],
)
async def test_a_frame_over_the_size_limit_closes_1009(connect, settings, frame):
    settings.WS_MAX_MESSAGE_BYTES = 64
    socket = await connect("/ws/echo/")

    await socket.send_to(**frame)

    await assert_closed(socket, CloseCode.MESSAGE_TOO_BIG)


async def test_a_frame_exactly_at_the_size_limit_is_echoed(connect, settings):
    settings.WS_MAX_MESSAGE_BYTES = 64
    settings.WS_ECHO_PREFIX = ""
    socket = await connect("/ws/echo/")

    await socket.send_to(text_data="é" * 32)
    assert await socket.receive_from() == "é" * 32
    await socket.send_to(bytes_data=b"x" * 64)
    assert await socket.receive_from() == b"x" * 64


async def test_the_default_size_limit_is_64_kib(connect, settings):
    settings.WS_ECHO_PREFIX = ""
    socket = await connect("/ws/echo/")

    await socket.send_to(bytes_data=b"x" * 65536)
    assert await socket.receive_from() == b"x" * 65536
    await socket.send_to(bytes_data=b"x" * 65537)
    await assert_closed(socket, CloseCode.MESSAGE_TOO_BIG)


@pytest.mark.parametrize("path", ["/ws/", "/ws/echo", "/ws/echo/extra/", "/ws/sessions/", "/"])
async def test_an_unknown_websocket_path_is_refused_at_the_handshake(connect, path):
    socket = await connect(path)

    assert socket.accepted is False
