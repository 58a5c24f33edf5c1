"""`Rooms`: the client's subscriptions by channel, which `message` frames are delivered to."""

import asyncio
from collections.abc import Awaitable, Callable

from switchboard_client.errors import ConnectionLost, RateLimited, RequestError
from switchboard_client.session_tokens import Frame
from switchboard_client.subscription import Subscription


class Rooms:
    """The subscriptions of each channel the client has joined (one room, many iterators)."""

    def __init__(self) -> None:
        self._rooms: dict[str, set[Subscription]] = {}

    def __contains__(self, channel: object) -> bool:
        return channel in self._rooms

    def __len__(self) -> int:
        return len(self._rooms)

    def add(self, subscription: Subscription) -> None:
        """Register `subscription` with its channel's room."""
        self._rooms.setdefault(subscription.channel, set()).add(subscription)

    def forget(self, subscription: Subscription) -> None:
        """Remove `subscription`; the room goes with its last one."""
        subscribers = self._rooms.get(subscription.channel, set())
        subscribers.discard(subscription)
        if not subscribers:
            self._rooms.pop(subscription.channel, None)

    def deliver(self, frame: Frame) -> None:
        """Hand a `message` frame to every subscription of its channel."""
        # Any JSON value may come as the channel: one that is not a string matches no room.
        for subscription in list(self._rooms.get(frame.get("channel"), ())):  # type: ignore[arg-type]
            subscription.put(frame)

    def end_all(self, error: BaseException | None) -> None:
        """The client is over: every subscription ends, raising `error` if any."""
        for subscriptions in self._rooms.values():
            for subscription in subscriptions:
                subscription.end(error)

    async def resubscribe(
        self, *, exchange: Callable[[Frame], Awaitable[Frame]], request_timeout: float
    ) -> None:
        """Join again every room that has a subscription (a refused one ends with its error)."""
        for channel, subscriptions in list(self._rooms.items()):
            for attempt in range(3):
                try:
                    async with asyncio.timeout(request_timeout):
                        await exchange({"type": "subscribe", "channel": channel})
                    break
                except RateLimited:  # many rooms at once can outrun the frame rate
                    await asyncio.sleep(0.5 * (attempt + 1))
                except (ConnectionLost, TimeoutError):
                    return  # lost again: the next reconnect resubscribes
                except RequestError as e:  # refused now (forbidden…): that room ends
                    for subscription in list(subscriptions):
                        self.forget(subscription)
                        subscription.end(e)
                    break
