"""Room messages that Redis refused: counted and logged, never a silent drop.

channels-redis writes a group message only to member channels below their capacity and
reports the rest in one INFO record on `channels_redis.core`. Room groups hold one channel
per worker (`realtime.rooms.fanout`), so each refused write is a message that one worker's
subscribers will never see. This filter, installed on that logger by `config/settings.py`,
turns such a record into `switchboard_room_fanout_dropped_total{reason="worker_channel_full"}`
and a warning naming the room.
"""

import logging

OVER_CAPACITY = "%s of %s channels over capacity in group %s"  # channels-redis 4.x's text
ROOM_GROUP_PREFIX = "room."

logger = logging.getLogger("switchboard.realtime")


class RoomOverloadFilter(logging.Filter):
    """Count and log refused room-message writes; other records pass unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != OVER_CAPACITY or len(record.args or ()) != 3:
            return True
        dropped, members, group = tuple(record.args or ())
        if not str(group).startswith(ROOM_GROUP_PREFIX):
            return True
        from django.conf import settings

        from realtime.metrics import ROOM_FANOUT_DROPPED

        ROOM_FANOUT_DROPPED.labels("worker_channel_full").inc(int(str(dropped)))
        logger.warning(
            "room fan-out overload: a message to room %s dropped for %s of %s worker(s), "
            "their channel full (WS_ROOM_FANOUT_CAPACITY=%s)",
            str(group).removeprefix(ROOM_GROUP_PREFIX),
            dropped,
            members,
            settings.WS_ROOM_FANOUT_CAPACITY,
        )
        return False  # this warning replaces the INFO record
