"""The recovery policy: what a `subscribed` reply and a `message` frame do to a room's position."""

import pytest

from switchboard_client.errors import MissReason
from switchboard_client.recovery import (
    Delivery,
    Position,
    frame_position,
    message_step,
    subscribed_step,
)

AT_6 = Position("e1", 6)


def reply(**fields) -> dict:
    return {"type": "subscribed", "channel": "chat.a", **fields}


def message(offset=None, epoch="e1") -> dict:
    frame = {"type": "message", "channel": "chat.a", "data": 1}
    return frame if offset is None else {**frame, "offset": offset, "epoch": epoch}


@pytest.mark.parametrize(
    ("frame", "position"),
    [
        ({"offset": 3, "epoch": "e"}, Position("e", 3)),
        ({"offset": 0, "epoch": "e"}, Position("e", 0)),
        ({}, None),
        ({"offset": True, "epoch": "e"}, None),  # JSON true is no offset
        ({"offset": "3", "epoch": "e"}, None),
        ({"offset": 3}, None),
    ],
)
def test_a_frame_carries_a_position_only_with_an_integer_offset_and_an_epoch(frame, position):
    assert frame_position(frame) == position


def test_since_is_the_offset_and_epoch_to_resume_after():
    assert AT_6.since() == {"offset": 6, "epoch": "e1"}


@pytest.mark.parametrize(
    ("last", "frame", "step"),
    [
        # The first subscribe: the reply's position.
        (None, reply(offset=4, epoch="e1"), (Position("e1", 4), None)),
        # Recovered: the replay follows, so the position stays.
        (AT_6, reply(recovered=True, offset=9, epoch="e1"), (AT_6, None)),
        # Not recovered: missing, and the stream goes on from the reply.
        (AT_6, reply(recovered=False, offset=40, epoch="e1"), (Position("e1", 40), "nr")),
        (AT_6, reply(recovered=False, offset=0, epoch="e2"), (Position("e2", 0), "nr")),
        (AT_6, reply(recovered=False), (None, "nr")),  # the channel keeps no history now
        # Another subscription of a room already joined: the same epoch keeps the position.
        (AT_6, reply(offset=9, epoch="e1"), (AT_6, None)),
        (AT_6, reply(offset=2, epoch="e2"), (Position("e2", 2), "ec")),
        (AT_6, reply(recovered=True, offset=2, epoch="e2"), (Position("e2", 2), "ec")),
        (None, reply(), (None, None)),  # no history: as before
    ],
)
def test_a_subscribed_reply_moves_the_position_and_says_when_messages_may_be_missing(
    last, frame, step
):
    reasons = {None: None, "nr": MissReason.NOT_RECOVERED, "ec": MissReason.EPOCH_CHANGED}
    assert subscribed_step(last, frame) == (step[0], reasons[step[1]])


@pytest.mark.parametrize(
    ("last", "frame", "step"),
    [
        (AT_6, message(7), (Position("e1", 7), Delivery.DELIVER)),
        (AT_6, message(9), (Position("e1", 9), Delivery.DELIVER)),  # a gap is not a duplicate
        (AT_6, message(6), (AT_6, Delivery.DROP)),
        (AT_6, message(2), (AT_6, Delivery.DROP)),
        (AT_6, message(1, "e2"), (Position("e2", 1), Delivery.MISSED)),
        (None, message(3), (Position("e1", 3), Delivery.DELIVER)),
        (AT_6, message(), (AT_6, Delivery.DELIVER)),  # no offset: as before
        (None, message(), (None, Delivery.DELIVER)),
    ],
)
def test_a_message_is_delivered_dropped_as_a_duplicate_or_follows_a_gap(last, frame, step):
    assert message_step(last, frame) == step
