"""The room history's Lua scripts on a real Redis of the test's own: offsets, trimming, and a
new epoch whenever the Redis process changed (a restart that kept its data, a failover),
since it may have lost the last writes and offsets must never be given twice in one epoch."""

import pytest
from redis.exceptions import ConnectionError

from realtime.rooms.history import RedisHistory
from realtime.rooms.namespaces import Namespace

ROOMS = Namespace(name="log", history_size=3, history_ttl=60)


@pytest.fixture
def store(private_redis, settings) -> RedisHistory:
    settings.REDIS_URL = private_redis.url  # the Redis client factory's (the test's hub's)
    return RedisHistory()


def body(n: int) -> str:
    return f'{{"type":"message","data":{n}}}'


async def test_offsets_count_from_one_and_the_history_keeps_the_last_history_size(store):
    positions = [await store.append("log.a", ROOMS, body(n)) for n in range(5)]
    read = await store.read("log.a", ROOMS, limit=ROOMS.history_size)

    assert [p.offset for p in positions] == [1, 2, 3, 4, 5]
    assert len({p.epoch for p in positions}) == 1
    assert read.top == positions[-1]
    assert [(e.offset, e.body) for e in read.entries] == [(3, body(2)), (4, body(3)), (5, body(4))]
    assert store.append_sync("log.a", ROOMS, body(5)) == type(positions[0])(6, positions[0].epoch)


async def test_a_redis_restart_that_kept_its_data_starts_a_new_epoch(store, private_redis):
    before = await store.append("log.a", ROOMS, body(1))
    client = private_redis.client()
    try:
        client.save()  # the data survives the restart: an RDB file in the server's directory
    finally:
        client.close()
    private_redis.stop()
    private_redis.start()
    client = private_redis.client()
    try:
        kept = client.hget("switchboard:history-meta:log.a", "epoch")
    finally:
        client.close()
    try:
        read = await store.read("log.a", ROOMS, since=0, limit=3)
    except ConnectionError:  # the pool's connection to the old process: dropped once
        read = await store.read("log.a", ROOMS, since=0, limit=3)
    after = await store.append("log.a", ROOMS, body(2))

    assert kept == before.epoch.encode()  # the old epoch was there after the restart
    assert read.top.epoch != before.epoch and read.top.offset == 0 and read.entries == []
    assert (after.offset, after.epoch) == (1, read.top.epoch)


async def test_a_recovery_that_cannot_succeed_reads_no_entries(store):
    top = None
    for n in range(5):
        top = await store.append("log.a", ROOMS, body(n))

    other_epoch = await store.read("log.a", ROOMS, since=2, since_epoch="x", limit=3)
    trimmed = await store.read("log.a", ROOMS, since=0, since_epoch=top.epoch, limit=3)
    covered = await store.read("log.a", ROOMS, since=2, since_epoch=top.epoch, limit=3)

    assert (other_epoch.top, other_epoch.entries) == (top, [])
    assert (trimmed.top, trimmed.entries) == (top, [])  # 1 and 2 are gone: nothing read
    assert [e.offset for e in covered.entries] == [3, 4, 5]


async def test_a_room_only_read_keeps_its_epoch_for_history_ttl_not_the_meta_ttl(
    store, private_redis
):
    await store.read("log.never-published", ROOMS, limit=0)
    await store.append("log.published", ROOMS, body(1))
    client = private_redis.client()
    try:
        read_only = client.ttl("switchboard:history-meta:log.never-published")
        published = client.ttl("switchboard:history-meta:log.published")
    finally:
        client.close()

    assert 0 < read_only <= ROOMS.history_ttl
    assert published > ROOMS.history_ttl  # WS_HISTORY_META_TTL: 7 days
