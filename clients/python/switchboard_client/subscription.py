"""One room's `message` frames as an async iterator."""

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from switchboard_client.errors import MessagesMissed

if TYPE_CHECKING:
    from switchboard_client.client import SwitchboardClient

logger = logging.getLogger("switchboard_client")


class _End:
    """Queued when the subscription is over; `error` is raised, if any."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class Subscription:
    """`async for message in subscription`: the room's `message` frames, in order, across
    reconnects, each once (in a channel with history: by offset). Ends when unsubscribed or
    the client is closed; raises the client's error (SessionRevoked…) when the client stops
    on one. Where messages may be missing (not recovered after a reconnect, or a new epoch),
    it raises MessagesMissed once at that place in the stream, and iterating again goes on
    after it; with `on_missed`, that is called instead, as the client learns it. Beyond
    `max_queue` unread messages the oldest are dropped and counted in `dropped`."""

    def __init__(
        self,
        client: "SwitchboardClient",
        channel: str,
        *,
        max_queue: int,
        on_missed: Callable[[MessagesMissed], object] | None = None,
    ) -> None:
        self.client = client
        self.channel = channel
        self.dropped = 0
        self.on_missed = on_missed
        self._max_queue = max_queue
        self._items: deque[dict[str, Any] | MessagesMissed | _End] = deque()
        self._frames = 0  # the messages in _items: only they count against max_queue
        self._arrived = asyncio.Event()
        self._ended = False

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> dict[str, Any]:
        while not self._items:
            self._arrived.clear()
            await self._arrived.wait()
        item = self._items[0]
        if isinstance(item, _End):  # left in place: later calls end the same way
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        self._items.popleft()
        if isinstance(item, MessagesMissed):
            raise item
        self._frames -= 1
        return item

    async def aclose(self) -> None:
        """Unsubscribe (the room is left when no other subscription of it remains)."""
        await self.client.unsubscribe(self)

    def put(self, frame: dict[str, Any]) -> None:
        """Queue one message frame (called by the client's reader)."""
        if self._ended:
            return
        if self._frames >= self._max_queue:
            self._drop_oldest()
        self._items.append(frame)
        self._frames += 1
        self._arrived.set()

    def missed(self, error: MessagesMissed) -> None:
        """Messages may be missing here: `on_missed(error)` now, or `error` raised in order."""
        if self._ended:
            return
        if self.on_missed is not None:
            try:
                self.on_missed(error)
            except Exception:  # the reader calls it: a bug there must not stop the client
                logger.exception("on_missed raised for %s", self.channel)
            return
        if self._items and isinstance(self._items[-1], MessagesMissed):
            return  # no message between two gaps: one is said
        self._items.append(error)
        self._arrived.set()

    def end(self, error: BaseException | None) -> None:
        """No more messages: iteration stops, raising `error` if given."""
        if self._ended:
            return
        self._ended = True
        self._items.append(_End(error))
        self._arrived.set()

    def _drop_oldest(self) -> None:
        """Drop the oldest message, never a MessagesMissed (delivery is at most once anyway:
        the newest are kept)."""
        for index, item in enumerate(self._items):
            if isinstance(item, dict):
                del self._items[index]
                self._frames -= 1
                self.dropped += 1
                return
