"""realtime.rooms.presence: who a room lists, and the Redis store's leaves, without sockets."""

import json
import logging
from collections import defaultdict

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from realtime.cluster.workers import WORKER_ID
from realtime.rooms.presence import _ADD, _REMOVE, RedisPresence, distinct_users


def test_presence_lists_a_renamed_user_once():
    assert distinct_users([(2, "bob"), (1, "old"), (1, "new")]) == [(1, "new"), (2, "bob")]


class FakeRedis:
    """The hash commands presence writes with, on dicts; while `down`, each one raises as an
    unreachable Redis does. `commands` counts what reached it."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = defaultdict(dict)
        self.down = False
        self.commands = 0

    def _reached(self) -> None:
        self.commands += 1
        if self.down:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Refused.")

    async def hset(self, key: str, field: str, value: str) -> None:
        self._reached()
        self.hashes[key][field] = value

    async def hdel(self, key: str, *fields: str) -> None:
        self._reached()
        for field in fields:
            self.hashes[key].pop(field, None)

    async def evalsha(self, sha: str, numkeys: int, *args: object) -> int:
        """presence's add and remove scripts, on the dicts (their Lua runs in the system
        tests, on a real Redis)."""
        self._reached()
        (entries, counts), (field, *rest) = args[:numkeys], args[numkeys:]
        users = self.hashes[str(counts)]
        if sha == _ADD._async.sha:
            value, user_id = rest
            new = field not in self.hashes[str(entries)]
            self.hashes[str(entries)][str(field)] = str(value)
            if not new:
                return 0
            users[str(user_id)] = str(int(users.get(str(user_id), 0)) + 1)
            return int(users[str(user_id)] == "1")
        assert sha == _REMOVE._async.sha
        (user_id,) = rest
        if self.hashes[str(entries)].pop(str(field), None) is None:
            return 0
        left = int(users.get(str(user_id), 0)) - 1
        if left > 0:
            users[str(user_id)] = str(left)
            return 0
        users.pop(str(user_id), None)
        return 1

    def pipeline(self, transaction: bool = True) -> "FakePipeline":
        return FakePipeline(self)


class FakePipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis, self.queued = redis, []

    async def __aenter__(self) -> "FakePipeline":
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    def hdel(self, key: str, *fields: str) -> None:
        self.queued.append((key, fields))

    async def execute(self) -> None:
        self.redis._reached()
        for key, fields in self.queued:
            for field in fields:
                self.redis.hashes[key].pop(field, None)


class FakeHeartbeat:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis

    def client(self) -> FakeRedis:
        return self.redis

    async def ensure(self) -> None:
        pass


@pytest.fixture
def redis() -> FakeRedis:
    return FakeRedis()


@pytest.fixture
async def store(redis):
    presence = RedisPresence(FakeHeartbeat(redis))  # type: ignore[arg-type]
    yield presence
    for task in presence.tasks():
        task.cancel()


def lobby(redis: FakeRedis) -> dict[str, list]:
    """The lobby's entries in Redis (all of this worker's), by member."""
    hash_ = redis.hashes["switchboard:presence:lobby"]
    assert all(field.startswith(f"{WORKER_ID}|") for field in hash_), hash_
    return {field.split("|", 1)[1]: json.loads(value) for field, value in hash_.items()}


async def test_a_leave_redis_cannot_take_is_kept_and_deleted_by_the_next_retry(
    store, redis, caplog
):
    caplog.set_level(logging.WARNING, logger="switchboard.realtime")
    for member, user in (("c1", (1, "alice")), ("c2", (2, "bob")), ("c3", (3, "carol"))):
        await store.add("lobby", member, user)
    redis.down = True

    assert await store.remove("lobby", "c1", (1, "alice")) is False  # does not raise
    reached = redis.commands
    await store.remove("lobby", "c2", (2, "bob"))  # waits with the first: no second timeout
    assert redis.commands == reached
    with pytest.raises(RedisConnectionError):
        await store.removals_retry()  # still down: both kept
    assert store.removals == {("lobby", "c1"): (1, "alice"), ("lobby", "c2"): (2, "bob")}

    redis.down = False
    await store.add("lobby", "c2", (2, "bob"))  # bob subscribed again meanwhile
    assert await store.removals_retry() == 1
    assert lobby(redis) == {"c2": [2, "bob"], "c3": [3, "carol"]}
    assert store.removals == {}
    assert await store.remove("lobby", "c3", (3, "carol")) is True  # Redis answers: at once
    assert lobby(redis) == {"c2": [2, "bob"]}
    assert [r.getMessage() for r in caplog.records] == [
        "presence: a leave could not reach Redis (ConnectionError); it and the next ones are "
        "retried every 10 s",
        "presence: Redis answers again; 1 leave(s) written",
    ]


async def test_a_leave_rejoined_while_its_removal_ran_is_written_again(store, redis):
    await store.add("lobby", "c1", (1, "alice"))
    redis.down = True
    await store.remove("lobby", "c1", (1, "alice"))
    redis.down = False
    store.entries[("lobby", "c1")] = (1, "alice")  # joined again as the retry began

    await store.removals_retry()

    assert lobby(redis) == {"c1": [1, "alice"]}
