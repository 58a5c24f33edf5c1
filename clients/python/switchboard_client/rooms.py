"""`Rooms`: the client's subscriptions by channel, which `message` frames are delivered to,
and where each room's stream stands (recovery.py) for the resubscribe after a reconnect."""

import asyncio
from collections.abc import Awaitable, Callable

from switchboard_client.errors import (
    ConnectionLost,
    MessagesMissed,
    MissReason,
    RateLimited,
    RequestError,
)
from switchboard_client.recovery import Delivery, Position, message_step, subscribed_step
from switchboard_client.session_tokens import Frame
from switchboard_client.subscription import Subscription


class Rooms:
    """The subscriptions of each channel the client has joined (one room, many iterators)."""

    def __init__(self) -> None:
        self._rooms: dict[str, set[Subscription]] = {}
        # Where each room's stream stands: the last message delivered, or the `subscribed`
        # reply's position when none came yet (rooms in a channel with history only).
        self._positions: dict[str, Position] = {}

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
            self._positions.pop(subscription.channel, None)

    def subscribe_frame(self, channel: str) -> Frame:
        """The subscribe that joins `channel` again: with `since` when its position is known."""
        position = self._positions.get(channel)
        if position is None:
            return {"type": "subscribe", "channel": channel}
        return {"type": "subscribe", "channel": channel, "since": position.since()}

    def subscribed(self, frame: Frame) -> None:
        """A `subscribed` reply: move the room's position, and say so when messages may be
        missing. Called as the frame is read, before any message that follows it."""
        channel = frame.get("channel")
        if not isinstance(channel, str) or channel not in self._rooms:
            return
        position, missed = subscribed_step(self._positions.get(channel), frame)
        self._position_set(channel, position)
        if missed is not None:
            self._missed(channel, missed, position)

    def deliver(self, frame: Frame) -> None:
        """Hand a `message` frame to every subscription of its channel, unless it is a
        duplicate of one already delivered (its offset)."""
        channel = frame.get("channel")
        # Any JSON value may come as the channel: one that is not a string matches no room.
        if not isinstance(channel, str) or channel not in self._rooms:
            return
        position, delivery = message_step(self._positions.get(channel), frame)
        if delivery is Delivery.DROP:
            return
        self._position_set(channel, position)
        if delivery is Delivery.MISSED:
            self._missed(channel, MissReason.EPOCH_CHANGED, position)
        for subscription in list(self._rooms.get(channel, ())):
            subscription.put(frame)

    def _position_set(self, channel: str, position: Position | None) -> None:
        if position is None:
            self._positions.pop(channel, None)
        else:
            self._positions[channel] = position

    def _missed(self, channel: str, reason: MissReason, position: Position | None) -> None:
        for subscription in list(self._rooms.get(channel, ())):
            subscription.missed(
                MessagesMissed(
                    channel,
                    reason,
                    epoch=position.epoch if position else None,
                    offset=position.offset if position else None,
                )
            )

    def end_all(self, error: BaseException | None) -> None:
        """The client is over: every subscription ends, raising `error` if any."""
        for subscriptions in self._rooms.values():
            for subscription in subscriptions:
                subscription.end(error)

    async def resubscribe(
        self, *, exchange: Callable[[Frame], Awaitable[Frame]], request_timeout: float
    ) -> None:
        """Join again every room that has a subscription, from where its stream stands (`since`)
        when it is known (a refused room ends with its error)."""
        for channel, subscriptions in list(self._rooms.items()):
            for attempt in range(3):
                try:
                    async with asyncio.timeout(request_timeout):
                        await exchange(self.subscribe_frame(channel))
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
