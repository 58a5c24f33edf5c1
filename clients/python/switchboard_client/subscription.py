"""One room's `message` frames as an async iterator."""

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from switchboard_client.client import SwitchboardClient


class _End:
    """Put in the queue when the subscription is over; `error` is raised, if any."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class Subscription:
    """`async for message in subscription`: the room's `message` frames, in order, across
    reconnects. Ends when unsubscribed or the client is closed; raises the client's error
    (SessionRevoked…) when the client stops on one. Beyond `max_queue` unread messages the
    oldest are dropped and counted in `dropped`."""

    def __init__(self, client: "SwitchboardClient", channel: str, *, max_queue: int) -> None:
        self.client = client
        self.channel = channel
        self.dropped = 0
        self._queue: asyncio.Queue[dict[str, Any] | _End] = asyncio.Queue(maxsize=max_queue)
        self._ended = False

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> dict[str, Any]:
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # later calls end the same way
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        """Unsubscribe (the room is left when no other subscription of it remains)."""
        await self.client.unsubscribe(self)

    def put(self, frame: dict[str, Any]) -> None:
        """Queue one message frame (called by the client's reader)."""
        if self._ended:
            return
        if self._queue.full():
            self._queue.get_nowait()  # delivery is at most once anyway: keep the newest
            self.dropped += 1
        self._queue.put_nowait(frame)

    def end(self, error: BaseException | None) -> None:
        """No more messages: iteration stops, raising `error` if given."""
        if self._ended:
            return
        self._ended = True
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(_End(error))
