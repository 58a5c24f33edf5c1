"""realtime.hub: one owner of the worker's shared state, installed, reached and closed."""

import asyncio
import threading

from core.redis import redis_clients
from realtime.cluster.workers import WORKER_ID, LocalWorkers
from realtime.hub import Hub, hub, hub_install
from realtime.session.credentials import sessions_revalidate


def test_the_recovery_hooks_are_registered_when_the_hub_is_built_in_their_order():
    built = Hub()

    assert built.health.recovery_hooks == [
        built.room_fanout_rejoin,
        built.user_groups_rejoin,
        sessions_revalidate,
        built.heartbeat_renew,
    ]


def test_the_installed_hub_is_the_one_reached_and_holds_the_redis_factory(worker_hub):
    assert hub() is worker_hub
    assert redis_clients() is worker_hub.redis

    other = Hub()
    previous = hub_install(other)
    try:
        assert (previous, hub(), redis_clients()) == (worker_hub, other, other.redis)
    finally:
        hub_install(previous)
    assert (hub(), redis_clients()) == (worker_hub, worker_hub.redis)


def test_a_part_is_built_once_on_first_use_from_the_settings_of_that_moment(settings):
    built = Hub()
    settings.REDIS_URL = ""
    seen: list = []

    threads = [threading.Thread(target=lambda: seen.append(built.heartbeat)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert isinstance(seen[0], LocalWorkers)
    assert all(part is seen[0] for part in seen)


async def test_a_spawned_task_is_kept_until_done_and_cancelled_when_the_hub_closes():
    built = Hub()
    done = built.spawn(asyncio.sleep(0))
    pending = built.spawn(asyncio.sleep(60))
    await done

    assert built.tasks() == [pending]
    await built.aclose()
    assert pending.cancelled()
    assert built.tasks() == []


async def test_close_from_another_thread_cancels_the_tasks_on_their_loop():
    built = Hub()
    pending = built.spawn(asyncio.sleep(60))

    await asyncio.to_thread(built.close)  # as daphne's shutdown hooks run

    await asyncio.gather(pending, return_exceptions=True)
    assert pending.cancelled()


async def test_the_room_fanout_and_registry_closes_are_one_per_event_loop(worker_hub):
    fanout, closes = worker_hub.room_fanout, worker_hub.registry_closes

    assert (worker_hub.room_fanout, worker_hub.registry_closes) == (fanout, closes)

    async def elsewhere():
        return worker_hub.room_fanout, worker_hub.registry_closes

    other_fanout, other_closes = await asyncio.to_thread(asyncio.run, elsewhere())
    assert other_fanout is not fanout
    assert other_closes is not closes


def test_a_hubs_redis_connections_carry_the_workers_name():
    clients = Hub().redis
    assert clients.options.client_name == f"switchboard:{WORKER_ID}"
    assert clients._pool_kwargs(None)["client_name"] == f"switchboard:{WORKER_ID}"
