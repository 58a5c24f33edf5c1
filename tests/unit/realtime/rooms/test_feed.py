"""A room's feed on one worker: messages handed on by offset, gaps filled from history,
duplicates dropped, a recovering subscriber's live messages held until its replay is sent."""

import asyncio
import logging

import pytest

from realtime.rooms import feed as feed_module
from realtime.rooms.feed import Item, RoomFeed
from realtime.rooms.history import Entry, HistoryRead, Position, frame_with_position

EPOCH = "e1"


def body(offset: int) -> str:
    return f'{{"n":{offset}}}'


def framed(offset: int, epoch: str = EPOCH) -> str:
    """The frame of offset `offset` as live and replayed messages carry it."""
    return frame_with_position(body(offset), offset, epoch)


def item(offset: int, epoch: str = EPOCH) -> Item:
    return Item(framed(offset, epoch), offset, epoch)


class Subscriber:
    def __init__(self) -> None:
        self.got: list[str] = []

    async def deliver(self, room: str, text: str) -> None:
        self.got.append(text)


class History:
    """What the feed reads to fill a gap: the entries after an offset, as Redis answers."""

    def __init__(self, top: int, oldest: int = 1, epoch: str = EPOCH) -> None:
        self.top, self.oldest, self.epoch = top, oldest, epoch
        self.reads: list[int] = []

    async def read(self, position: Position) -> HistoryRead:
        since = position.offset
        self.reads.append(since)
        entries = [Entry(o, body(o)) for o in range(max(since + 1, self.oldest), self.top + 1)]
        return HistoryRead(Position(self.top, self.epoch), entries)


@pytest.fixture(autouse=True)
def short_gap_wait(monkeypatch):
    monkeypatch.setattr(feed_module, "GAP_WAIT", 0.05)


def started(history: History, at: int = 0) -> tuple[RoomFeed, Subscriber]:
    feed = RoomFeed("chat.x", reader=history.read)
    feed.start(Position(at, EPOCH))
    subscriber = Subscriber()
    feed.add(subscriber, subscriber.deliver, hold=False)
    return feed, subscriber


async def test_messages_out_of_order_are_handed_on_in_offset_order():
    feed, sub = started(History(top=3))

    for offset in (2, 3, 1):
        await feed.arrive(item(offset))

    assert sub.got == [framed(1), framed(2), framed(3)]
    assert feed.position == Position(3, EPOCH)


async def test_an_offset_handed_on_already_is_dropped():
    feed, sub = started(History(top=2))

    for offset in (1, 2, 1, 2):
        await feed.arrive(item(offset))

    assert sub.got == [framed(1), framed(2)]


async def test_offsets_up_to_where_the_room_stood_at_the_join_are_not_handed_on():
    feed, sub = started(History(top=5), at=4)

    await feed.arrive(item(4))
    await feed.arrive(item(5))

    assert sub.got == [framed(5)]


async def test_a_gap_that_does_not_fill_is_read_from_history_after_the_wait():
    history = History(top=3)
    feed, sub = started(history)

    await feed.arrive(item(3))  # 1 and 2 were lost on the way (a full worker channel)
    held_back = list(sub.got)
    await asyncio.sleep(0.3)

    assert held_back == []
    assert history.reads == [0]
    assert sub.got == [framed(1), framed(2), framed(3)]


async def test_a_gap_no_longer_in_history_is_skipped_logged_and_the_rest_handed_on(caplog):
    history = History(top=4, oldest=3)  # 1 and 2 trimmed already
    feed, sub = started(history)

    with caplog.at_level(logging.WARNING, logger="switchboard.realtime"):
        await feed.arrive(item(4))
        await asyncio.sleep(0.3)

    assert sub.got == [framed(3), framed(4)]
    assert (
        "room chat.x: 2 message(s) before offset 3 were lost on the way and are no longer in "
        "its history; its subscribers did not get them" in caplog.text
    )


async def test_a_new_epoch_starts_again_at_offset_one():
    feed, sub = started(History(top=0), at=7)

    await feed.arrive(item(1, "e2"))
    await feed.arrive(item(8, EPOCH))  # late, from the history that is gone
    await feed.arrive(item(2, "e2"))

    assert sub.got == [framed(1, "e2"), framed(2, "e2")]
    assert feed.position == Position(2, "e2")


async def test_a_recovering_subscriber_gets_what_follows_its_replay_once_each():
    feed, first = started(History(top=0))
    recovering = Subscriber()
    feed.add(recovering, recovering.deliver, hold=True)

    for offset in (1, 2, 3):  # live while the recovering one's history is read
        await feed.arrive(item(offset))
    held = list(recovering.got)
    await feed.release(recovering, Position(2, EPOCH))  # its replay went up to 2
    await feed.arrive(item(4))

    assert held == []
    assert recovering.got == [framed(3), framed(4)]
    assert first.got == [framed(1), framed(2), framed(3), framed(4)]


async def test_a_room_without_history_hands_everything_on_as_it_comes():
    feed = RoomFeed("lobby")
    sub = Subscriber()
    feed.add(sub, sub.deliver, hold=False)

    for text in ("a", "b", "a"):
        await feed.arrive(Item(text))

    assert sub.got == ["a", "b", "a"]


async def test_a_message_of_an_older_epoch_never_sends_a_room_back_to_it():
    feed, sub = started(History(top=0), at=0)
    feed.position = Position(0, "e2")  # started on the new history

    await feed.arrive(item(101, "e1"))  # still on its way from the one that is gone
    await feed.arrive(item(1, "e2"))
    await feed.arrive(item(2, "e2"))

    assert sub.got == [framed(1, "e2"), framed(2, "e2")]
    assert feed.position == Position(2, "e2")


async def test_a_subscriber_on_a_newer_epoch_gets_nothing_of_an_older_one():
    feed = RoomFeed("chat.x", reader=History(top=0).read)
    feed.start(Position(100, EPOCH))
    sub = Subscriber()
    feed.add(sub, sub.deliver, hold=True)
    await feed.release(sub, Position(2, "e2"))  # its replay was of the new history

    await feed.arrive(item(101, EPOCH))
    await feed.arrive(item(3, "e2"))

    assert sub.got == [framed(3, "e2")]


class FlakyHistory(History):
    """Fails its first `failures` reads, and answers the others after `delay` seconds."""

    def __init__(self, top: int, *, failures: int = 0, delay: float = 0.0) -> None:
        super().__init__(top)
        self.failures, self.delay = failures, delay

    async def read(self, position: Position) -> HistoryRead:
        await asyncio.sleep(self.delay)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("history Redis unreachable")
        return await super().read(position)


async def test_a_gap_whose_read_fails_is_read_again_not_given_up():
    history = FlakyHistory(top=3, failures=2)
    feed, sub = started(history)

    await feed.arrive(item(3))
    await asyncio.sleep(0.05 * (1 + 2 + 3) + 0.2)

    assert sub.got == [framed(1), framed(2), framed(3)]


async def test_a_slow_gap_read_holds_up_no_message_that_can_go_on():
    history = FlakyHistory(top=1, delay=1.0)
    feed, sub = started(history)
    await feed.arrive(item(3))  # 1 and 2 missing: a read begins after the wait
    await asyncio.sleep(0.1)

    async with asyncio.timeout(0.2):  # the read takes 1 s: arriving must not wait for it
        await feed.arrive(item(1))
        await feed.arrive(item(2))

    assert sub.got == [framed(1), framed(2), framed(3)]


async def test_holding_past_the_pending_limit_gives_the_gap_up_and_hands_the_rest_on(
    monkeypatch,
):
    monkeypatch.setattr(feed_module, "PENDING_LIMIT", 3)
    feed, sub = started(History(top=0))

    for offset in (2, 3, 4, 5):  # 1 never comes
        await feed.arrive(item(offset))

    assert sub.got == [framed(2), framed(3), framed(4), framed(5)]
