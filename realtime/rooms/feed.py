"""One room on one worker: its local subscribers, and, in a room with history, the order of
its messages (`RoomFeed`, held by the worker's room fan-out, `realtime.rooms.fanout`).

Two publishers on two workers can reach a third worker's channel in either order, and the
channel layer may drop a message (a full worker channel). So in a room with history the
feed hands messages on strictly by offset: the next one at once, a later one held until the
gap fills, and, when it does not fill within `GAP_WAIT` seconds, the missing ones read from
the history; an offset already handled is a duplicate and dropped. Each subscriber also
keeps its own position, so it never gets an offset twice or out of order, and a subscriber
that is recovering (its replay is being read and sent) has live messages held for it until
`release`, which hands it those after the replay's last offset: no gap and no duplicate
across the hand-over.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from realtime import metrics
from realtime.rooms.history import HistoryRead, Position, epoch_newer, frame_with_position

logger = logging.getLogger("switchboard.realtime")

Deliver = Callable[[str, str], Awaitable[None]]  # (room, frame text)
Reader = Callable[[Position], Awaitable[HistoryRead]]  # the entries after a position
GAP_WAIT = 0.5  # seconds a later message waits for an earlier one before history is read
GAP_READ_TRIES = 4  # reads of a gap (after 1, 2, 3, 4 × GAP_WAIT) before it is given up
PENDING_LIMIT = 10_000  # messages a room may hold waiting for a gap; past it, the gap is skipped


@dataclass(frozen=True)
class Item:
    """One frame for the room's subscribers: a message (with its position, in a room with
    history) or a join/leave event (none)."""

    text: str
    offset: int | None = None
    epoch: str | None = None


@dataclass
class Member:
    deliver: Deliver
    position: Position | None = None  # the last offset sent to it (rooms with history)
    held: list[Item] | None = None  # while recovering: what arrived meanwhile


class RoomFeed:
    """The local subscribers of one room, in the order they subscribed."""

    def __init__(self, channel: str, *, reader: Reader | None = None) -> None:
        self.channel = channel
        self.reader = reader  # None: the room keeps no history
        self.members: dict[object, Member] = {}
        # Every offset up to it handled (rooms with history): where the room stood right after
        # this worker joined its group (`start`), so that whatever a subscriber's own read
        # does not cover still comes, in order.
        self.position: Position | None = None
        self._pending: dict[int, Item] = {}
        self._lock = asyncio.Lock()
        self._gap_task: asyncio.Task[None] | None = None

    # -- subscribers ----------------------------------------------------------------------

    def add(self, subscriber: object, deliver: Deliver, *, hold: bool) -> None:
        """Add `subscriber`; with `hold`, messages are kept for it until `release`."""
        self.members[subscriber] = Member(deliver, held=[] if hold else None)

    def remove(self, subscriber: object) -> None:
        self.members.pop(subscriber, None)
        if not self.members and self._gap_task is not None:
            self._gap_task.cancel()

    def start(self, top: Position) -> None:
        """The room's position read right after this worker's channel joined its group."""
        self.position = top

    def position_of(self, subscriber: object) -> Position | None:
        member = self.members.get(subscriber)
        return None if member is None else member.position

    async def release(self, subscriber: object, top: Position) -> None:
        """`subscriber` has been sent everything up to `top`: from now on it gets what
        follows, starting with what was held for it."""
        async with self._lock:
            if self.position is not None and epoch_newer(top.epoch, self.position.epoch):
                # Its read found a newer history (Redis restarted): the room is there now.
                self._pending = {o: i for o, i in self._pending.items() if i.epoch == top.epoch}
                self.position = top
                await self._drain()
            member = self.members.get(subscriber)
            if member is None or member.held is None:
                return
            # Under the lock no message of the room is handed on meanwhile: what is held goes
            # first, in order, and the position filters out what the replay covered.
            held, member.held, member.position = member.held, None, top
            for item in held:
                await self._send(member, item)

    # -- messages -------------------------------------------------------------------------

    async def arrive(self, item: Item) -> int:
        """One frame from the worker channel; how many subscribers were sent something."""
        if item.offset is None or self.reader is None:
            return await self._emit(item)
        async with self._lock:
            return await self._arrive(item)

    async def _arrive(self, item: Item) -> int:
        assert item.offset is not None and item.epoch is not None
        position = self.position
        if position is None:  # not started (a subscribe that failed half-way)
            return await self._emit(item)
        if item.epoch != position.epoch:
            if not epoch_newer(item.epoch, position.epoch):
                return 0  # still on its way from a history that is gone
            # The history may have lost messages (Redis restarted, failed over): a new one
            # starts at offset 1.
            self._pending = {o: i for o, i in self._pending.items() if i.epoch == item.epoch}
            position = self.position = Position(0, item.epoch)
        if item.offset <= position.offset:
            metrics.HISTORY_DUPLICATES.inc()
            return 0
        return await self._hold_or_next(item)

    def _hold(self, item: Item) -> None:
        assert item.offset is not None
        self._pending[item.offset] = item
        if len(self._pending) > PENDING_LIMIT:  # the gap is not filling: give up on it
            self._skip_to(min(self._pending))

    async def _hold_or_next(self, item: Item) -> int:
        """`_arrive`'s end: held while there is a gap before it, else handed on with what
        follows it."""
        assert self.position is not None and item.offset is not None
        if item.offset > self.position.offset + 1:
            self._hold(item)
            if self._pending and min(self._pending) == self.position.offset + 1:
                return await self._drain()  # the hold gave up on a gap
            self._gap_watch()
            return 0
        sent = await self._next(item)
        return sent + await self._drain()

    async def _next(self, item: Item) -> int:
        assert item.offset is not None and item.epoch is not None
        self.position = Position(item.offset, item.epoch)
        return await self._emit(item)

    async def _drain(self) -> int:
        """Hand on the held messages that follow the position, in order."""
        assert self.position is not None
        sent = 0
        for offset in [o for o in self._pending if o <= self.position.offset]:
            del self._pending[offset]
        while (item := self._pending.pop(self.position.offset + 1, None)) is not None:
            sent += await self._next(item)
        if self._pending:
            self._gap_watch()
        return sent

    def _skip_to(self, offset: int, why: str = "are no longer in its history") -> None:
        """Give up on the offsets before `offset` (lost: neither delivered nor in history)."""
        assert self.position is not None
        missing = offset - 1 - self.position.offset
        if missing > 0:
            metrics.HISTORY_GAPS.labels("skipped").inc(missing)
            logger.warning(
                "room %s: %d message(s) before offset %d were lost on the way and %s; its "
                "subscribers did not get them",
                self.channel,
                missing,
                offset,
                why,
            )
            self.position = Position(offset - 1, self.position.epoch)

    def _gap_watch(self) -> None:
        if self._gap_task is None or self._gap_task.done():
            self._gap_task = asyncio.get_running_loop().create_task(self._gap_run())

    async def _gap_run(self) -> None:
        """Wait GAP_WAIT, then read what is still missing from the history, outside the lock
        (a slow Redis must not hold up this room's other messages, nor, through the worker's
        one reader, every other room); a failed read is tried again GAP_READ_TRIES times
        before the gap is given up."""
        try:
            for attempt in range(GAP_READ_TRIES):
                await asyncio.sleep(GAP_WAIT * (attempt + 1))
                if not self._pending or self.position is None or self.reader is None:
                    return
                position = self.position
                try:
                    read = await self.reader(position)
                except Exception as e:
                    logger.warning(
                        "room %s: a gap in its messages could not be read from history (%s)",
                        self.channel,
                        type(e).__name__,
                    )
                    continue
                async with self._lock:
                    await self._gap_fill(position, read)
                return
            async with self._lock:  # history unreadable: what is held goes on without it
                if self._pending and self.position is not None:
                    self._skip_to(min(self._pending), why="could not be read from history")
                    await self._drain()
        except Exception:
            logger.exception("room %s: filling a gap in its messages failed", self.channel)
        finally:
            if self._gap_task is asyncio.current_task():
                self._gap_task = None
            if self._pending and self.members:
                self._gap_watch()

    async def _gap_fill(self, started: Position, read: HistoryRead) -> None:
        """Hand on, in order, the entries `read` has after the position (if the room is still
        where it was when the read began), then whatever was held behind them."""
        if self.position is None or self.position.epoch != started.epoch:
            return  # a new history began meanwhile
        epoch = started.epoch
        if read.top.epoch == epoch:
            for entry in read.entries:
                if entry.offset <= self.position.offset:
                    continue
                if entry.offset > self.position.offset + 1:
                    self._skip_to(entry.offset)
                held = self._pending.pop(entry.offset, None)
                if held is None:
                    metrics.HISTORY_GAPS.labels("filled").inc()
                    held = Item(
                        frame_with_position(entry.body, entry.offset, epoch), entry.offset, epoch
                    )
                await self._next(held)
        if self._pending and min(self._pending) > self.position.offset + 1:
            self._skip_to(min(self._pending))
        await self._drain()

    async def _emit(self, item: Item) -> int:
        sent = 0
        for member in list(self.members.values()):
            sent += await self._send(member, item)
        return sent

    async def _send(self, member: Member, item: Item) -> int:
        """Send `item` to one subscriber unless it already had it; 1 when sent."""
        if member.held is not None:
            member.held.append(item)
            return 0
        if item.offset is not None and item.epoch is not None:
            position = member.position
            if position is not None:
                if position.epoch == item.epoch and item.offset <= position.offset:
                    return 0  # it had this one (the replay, or live before)
                if epoch_newer(position.epoch, item.epoch):
                    return 0  # from a history older than the one it has moved to
            member.position = Position(item.offset, item.epoch)
        try:
            await member.deliver(self.channel, item.text)
        except Exception as e:
            metrics.ROOM_FANOUT_DROPPED.labels("send_failed").inc()
            logger.warning(
                "room fan-out: a message to room %s not sent to one subscriber (%s)",
                self.channel,
                type(e).__name__,
            )
            return 0
        return 1
