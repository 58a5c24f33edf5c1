"""A subscription's queue: messages in order, MessagesMissed raised once in its place and never
dropped by the overflow, the end raised to every later call."""

import asyncio

import pytest

from switchboard_client import MessagesMissed, MissReason, SessionRevoked
from switchboard_client.subscription import Subscription


def gap(offset: int) -> MessagesMissed:
    return MessagesMissed("chat.a", MissReason.NOT_RECOVERED, epoch="e1", offset=offset)


def subscription(max_queue: int = 10, **kwargs) -> Subscription:
    return Subscription(None, "chat.a", max_queue=max_queue, **kwargs)  # type: ignore[arg-type]


async def drain(room: Subscription, count: int) -> list:
    """The next `count` items: each message's data, or the MessagesMissed raised."""
    items = []
    async with asyncio.timeout(1):
        for _ in range(count):
            try:
                items.append((await anext(room))["data"])
            except MessagesMissed as e:
                items.append(e)
    return items


async def test_messages_missed_is_raised_once_in_its_place_and_back_to_back_gaps_are_one():
    room = subscription()
    first, second = gap(3), gap(9)
    room.put({"data": 1})
    room.missed(first)
    room.missed(second)
    room.put({"data": 2})
    assert await drain(room, 3) == [1, first, 2]


async def test_the_overflow_drops_the_oldest_messages_but_never_a_gap():
    room = subscription(max_queue=2)
    missed = gap(1)
    room.missed(missed)
    for n in range(4):
        room.put({"data": n})
    assert room.dropped == 2
    assert await drain(room, 3) == [missed, 2, 3]


async def test_a_waiting_iterator_wakes_for_a_gap_and_the_end_is_raised_to_every_call():
    room = subscription()
    waiting = asyncio.ensure_future(drain(room, 1))
    await asyncio.sleep(0)
    missed = gap(2)
    room.missed(missed)
    assert await waiting == [missed]
    room.put({"data": "last"})
    room.end(SessionRevoked(4501, "session revoked"))
    room.missed(gap(5))  # after the end: nothing more
    assert await drain(room, 1) == ["last"]
    for _ in range(2):
        with pytest.raises(SessionRevoked):
            await anext(room)


async def test_on_missed_is_called_at_once_and_its_error_does_not_escape(caplog):
    calls = []

    def on_missed(error: MessagesMissed) -> None:
        calls.append(error)
        raise RuntimeError("a bug in the callback")

    room = subscription(on_missed=on_missed)
    missed = gap(4)
    room.missed(missed)
    room.put({"data": 1})
    assert calls == [missed]
    assert await drain(room, 1) == [1]
    assert "on_missed raised for chat.a" in caplog.text
