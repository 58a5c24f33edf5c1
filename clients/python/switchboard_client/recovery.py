"""Where a room's stream stands, and what each frame does to it.

In a channel that keeps history every message carries an offset (1, 2, 3 … per channel) and
the epoch of that history. A room's `Position` is the (epoch, offset) of the last message
handed to its subscriptions, or of the `subscribed` reply when none came yet; a resubscribe
sends it as `since`. `subscribed_step` and `message_step` are the whole policy: pure
functions from the position and a frame to the next position and what to do.
"""

from dataclasses import dataclass
from enum import Enum
from typing import Any

from switchboard_client.errors import MissReason


@dataclass(frozen=True)
class Position:
    """A place in one channel's history: `offset` in `epoch`."""

    epoch: str
    offset: int

    def since(self) -> dict[str, Any]:
        """The `since` of a subscribe that resumes after this position."""
        return {"offset": self.offset, "epoch": self.epoch}


def frame_position(frame: dict[str, Any]) -> Position | None:
    """The (epoch, offset) a frame carries; None when it has none (a channel without history)."""
    offset, epoch = frame.get("offset"), frame.get("epoch")
    if isinstance(offset, int) and not isinstance(offset, bool) and isinstance(epoch, str):
        return Position(epoch, offset)
    return None


class Delivery(Enum):
    """What the client does with a `message` frame."""

    DELIVER = "deliver"
    DROP = "drop"  # a duplicate: its offset is not past the last one seen in its epoch
    MISSED = "missed"  # deliver it, after saying messages may be missing (a new epoch)


def subscribed_step(
    last: Position | None, frame: dict[str, Any]
) -> tuple[Position | None, MissReason | None]:
    """The room's position after a `subscribed` reply, and why messages may be missing, if so.

    `recovered: true`: the replay of every message after `since` follows, so the position
    stays where it was (moving it to the reply's offset would drop the replay as duplicates).
    `recovered: false`: nothing is replayed; the stream goes on from the reply's position.
    No `recovered` (no `since` was sent): the reply's position, unless the room already has
    one in the same epoch (another subscription of a room already joined).
    """
    position = frame_position(frame)
    recovered = frame.get("recovered")
    if recovered is False:
        return position, MissReason.NOT_RECOVERED
    if position is None:
        return None, None
    if last is None:
        return position, None
    if position.epoch != last.epoch:
        return position, MissReason.EPOCH_CHANGED
    return last, None


def message_step(last: Position | None, frame: dict[str, Any]) -> tuple[Position | None, Delivery]:
    """The room's position after a `message` frame, and what to do with the frame. A message
    without an offset is delivered as it is and leaves the position alone."""
    position = frame_position(frame)
    if position is None:
        return last, Delivery.DELIVER
    if last is None:
        return position, Delivery.DELIVER
    if position.epoch != last.epoch:
        return position, Delivery.MISSED
    if position.offset <= last.offset:
        return last, Delivery.DROP
    return position, Delivery.DELIVER
