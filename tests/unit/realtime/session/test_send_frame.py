"""LimitedConsumer.send_frame: data that cannot be encoded (nested past the recursion limit)
is the client's `invalid_message`, with its id, not an internal error."""

import pytest

from realtime.protocol.codes import ErrorCode
from realtime.protocol.frames import ProtocolError
from realtime.session.consumer import SessionConsumer

pytestmark = pytest.mark.asyncio


async def test_data_nested_too_deep_to_encode_is_invalid_message_with_the_id():
    data: list = []
    for _ in range(100_000):
        data = [data]
    sent = []
    consumer = SessionConsumer()
    consumer.send = lambda **kw: sent.append(kw)  # never reached

    with pytest.raises(ProtocolError) as raised:
        await consumer.send_frame("echo", 7, data=data)

    assert (raised.value.code, raised.value.message, raised.value.msg_id) == (
        ErrorCode.INVALID_MESSAGE,
        "Message is nested too deeply",
        7,
    )
    assert sent == []
