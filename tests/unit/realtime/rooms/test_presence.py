"""realtime.rooms.presence: who a room lists, without sockets."""

from realtime.rooms.presence import distinct_users


def test_presence_lists_a_renamed_user_once():
    assert distinct_users([(2, "bob"), (1, "old"), (1, "new")]) == [(1, "new"), (2, "bob")]
