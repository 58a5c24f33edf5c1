"""The hub: everything one worker shares between its sessions, in one owner.

The Redis client factory, the channel layer's health (and what runs when it recovers), the
heartbeat, presence, room history, the fan-out membership records, the connection rate,
tickets, the ticket rate, the room fan-out, the sessions by user (and the worker channel
their events come through), the session registry's batched writes and
pending closes, the open WebSockets, and the background tasks sessions leave behind. Built
with the application (`config.asgi` calls `hub_install`), reached through `hub()`, torn down
on shutdown
(`realtime.server.shutdown.worker_stop`, daphne's SIGTERM hook, calls `close()`; an ASGI
lifespan shutdown would `await hub().aclose()`). Tests install a fresh one per test.

Parts are built on first use, from the settings of that moment (a test may set REDIS_URL
first), once even when threads race (sync views run on many). Parts made of asyncio objects
belong to the loop that made them: the room fan-out, the sessions by user and the registry's
batchers and pending closes are kept per event loop (a worker runs one; tests run many).
"""

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from channels.layers import get_channel_layer
from django.conf import settings

from core.db_batch import Batcher
from core.rate_limits import SharedLimiter
from core.redis import RedisClients, RedisOptions, redis_clients, redis_clients_source
from realtime.auth.tickets import MemoryTickets, RedisTickets, TicketStore
from realtime.cluster.health import LayerHealth
from realtime.cluster.workers import WORKER_ID, LocalWorkers, WorkerHeartbeat
from realtime.registry.closes import RegistryCloses
from realtime.registry.services import Close, SessionOpen
from realtime.rooms.fanout import RoomFanout, room_layer_alias
from realtime.rooms.history import MemoryHistory, RedisHistory
from realtime.rooms.membership import LocalFanoutMembers, RedisFanoutMembers
from realtime.rooms.namespaces import namespace_of
from realtime.rooms.presence import MemoryPresence, RedisPresence
from realtime.session.credentials import sessions_revalidate

if TYPE_CHECKING:
    from realtime.edge.connect_rate import ConnectRate
    from realtime.session.user_groups import UserSessions

T = TypeVar("T")
logger = logging.getLogger("switchboard.realtime")


class LoopParts:
    """The hub's parts on one event loop."""

    def __init__(self) -> None:
        # Imported here: the registry's batched writes reach the hub through `hub()`.
        from realtime.registry import batched

        self.room_fanout: RoomFanout | None = None
        self.user_sessions: UserSessions | None = None
        self.registry_closes = RegistryCloses()
        self.open_batcher: Batcher[SessionOpen, bool | None] = Batcher(batched.opens_write)
        self.close_batcher: Batcher[Close, None] = Batcher(batched.closes_write)

    def tasks(self) -> list[asyncio.Task[None]]:
        """The fan-out's, the user sessions' and the close retries' (a batch being written is
        left to finish)."""
        fanout = [] if self.room_fanout is None else self.room_fanout.tasks()
        sessions = [] if self.user_sessions is None else self.user_sessions.tasks()
        return [*fanout, *sessions, *self.registry_closes.tasks()]


class Hub:
    """One worker's shared state; `redis` given, or built from settings on first use."""

    def __init__(self, *, redis: RedisClients | None = None) -> None:
        self._lock = threading.RLock()
        self._parts: dict[str, Any] = {} if redis is None else {"redis": redis}
        self._loops: dict[asyncio.AbstractEventLoop, LoopParts] = {}
        self._spawned: set[asyncio.Task[None]] = set()
        self.open_sockets: set[Any] = set()  # daphne's open WebSocket protocols (its adapter's)
        self.health = LayerHealth()
        # After an outage, in this order: the room groups, the sessions (revoked meanwhile?),
        # the heartbeat (a restarted Redis forgot it).
        self.health.recovery_hooks.extend(
            [
                self.room_fanout_rejoin,
                self.user_groups_rejoin,
                sessions_revalidate,
                self.heartbeat_renew,
            ]
        )

    def _part(self, name: str, build: Callable[[], T]) -> T:
        part = self._parts.get(name)
        if part is None:
            with self._lock:
                part = self._parts.get(name)
                if part is None:
                    part = self._parts[name] = build()
        return part

    # -- worker-wide parts, built on first use -----------------------------------------

    @property
    def redis(self) -> RedisClients:
        """The Redis client factory (`core.redis`)."""

        def build() -> RedisClients:
            named = replace(RedisOptions.from_settings(), client_name=f"switchboard:{WORKER_ID}")
            return RedisClients(named)

        return self._part("redis", build)

    @property
    def heartbeat(self) -> WorkerHeartbeat | LocalWorkers:
        """This worker's heartbeat and the alive-worker queries, chosen by REDIS_URL."""
        return self._part(
            "heartbeat", lambda: WorkerHeartbeat() if settings.REDIS_URL else LocalWorkers()
        )

    @property
    def presence(self) -> RedisPresence | MemoryPresence:
        """Who is in which room, chosen by REDIS_URL (through the heartbeat)."""

        def build() -> RedisPresence | MemoryPresence:
            beat = self.heartbeat
            if isinstance(beat, WorkerHeartbeat):
                return RedisPresence(beat, departed=self.members_departed)
            return MemoryPresence()

        return self._part("presence", build)

    @property
    def history(self) -> RedisHistory | MemoryHistory:
        """Room history (`realtime.rooms.history`), chosen by REDIS_URL."""
        return self._part(
            "history", lambda: RedisHistory() if settings.REDIS_URL else MemoryHistory()
        )

    @property
    def fanout_members(self) -> RedisFanoutMembers | LocalFanoutMembers:
        """Which rooms this worker's fan-out channel is in, recorded for the reapers."""

        def build() -> RedisFanoutMembers | LocalFanoutMembers:
            beat = self.heartbeat
            if settings.REDIS_URL and isinstance(beat, WorkerHeartbeat):
                return RedisFanoutMembers(beat)
            return LocalFanoutMembers()

        return self._part("fanout_members", build)

    @property
    def connect_rate(self) -> "ConnectRate":
        """The per-IP connection rate (WS_CONNECTS_PER_MINUTE) and its log memory."""

        def build() -> "ConnectRate":
            # Imported here: its middleware reaches the hub through `hub()`.
            from realtime.edge.connect_rate import ConnectRate

            return ConnectRate()

        return self._part("connect_rate", build)

    @property
    def tickets(self) -> TicketStore:
        """The WebSocket ticket store, chosen by REDIS_URL."""
        return self._part(
            "tickets", lambda: RedisTickets() if settings.REDIS_URL else MemoryTickets()
        )

    @property
    def ticket_rate(self) -> SharedLimiter:
        """The ticket-rate limiter (WS_TICKETS_PER_MINUTE)."""
        return self._part(
            "ticket_rate", lambda: SharedLimiter("ticket_rate", shared=bool(settings.REDIS_URL))
        )

    # -- parts per event loop ----------------------------------------------------------

    def _loop(self) -> LoopParts:
        loop = asyncio.get_running_loop()
        parts = self._loops.get(loop)
        if parts is None:
            for closed in [other for other in self._loops if other.is_closed()]:
                del self._loops[closed]
            parts = self._loops[loop] = LoopParts()
        return parts

    @property
    def room_fanout(self) -> RoomFanout:
        """This event loop's room fan-out (a new one when the configured layer changed)."""
        parts = self._loop()
        layer = get_channel_layer(room_layer_alias())
        fanout = parts.room_fanout
        if fanout is None or fanout.layer is not layer:
            if fanout is not None:
                fanout.stop()
            presence = self.presence
            fanout = parts.room_fanout = RoomFanout(
                layer,
                health=self.health,
                members=self.fanout_members,
                history=self.history,
                room_reaped=presence.dead_reap if isinstance(presence, RedisPresence) else None,
            )
        return fanout

    @property
    def user_sessions(self) -> "UserSessions":
        """This event loop's sessions by user and the worker channel their events come
        through (`realtime.session.user_groups`; a new one when the default layer changed)."""
        from realtime.session.user_groups import UserSessions  # it reaches the hub

        parts = self._loop()
        layer = get_channel_layer()
        sessions = parts.user_sessions
        if sessions is None or sessions.layer is not layer:
            if sessions is not None:
                sessions.stop()
            sessions = parts.user_sessions = UserSessions(layer, self.health)
        return sessions

    @property
    def registry_closes(self) -> RegistryCloses:
        """This event loop's session closes not recorded yet (`realtime.registry.closes`)."""
        return self._loop().registry_closes

    @property
    def open_batcher(self) -> Batcher[SessionOpen, bool | None]:
        """This event loop's batched registry opens (`realtime.registry.batched`)."""
        return self._loop().open_batcher

    @property
    def close_batcher(self) -> Batcher[Close, None]:
        """This event loop's batched registry closes (`realtime.registry.batched`)."""
        return self._loop().close_batcher

    async def members_departed(self, channel: str, users: list[tuple[int, str]]) -> None:
        """Users who left `channel` with a dead worker: a leave event each, where the room's
        namespace has join/leave events."""
        if namespace_of(channel).join_leave:
            for user in users:
                await self.room_fanout.member_event("leave", channel, user)

    async def room_fanout_rejoin(self, sessions: list[Any]) -> None:
        """After an outage: the worker channel back into every room group, once per worker."""
        parts = self._loops.get(asyncio.get_running_loop())
        if parts is not None and parts.room_fanout is not None:
            await parts.room_fanout.groups_renew()

    async def user_groups_rejoin(self, sessions: list[Any]) -> None:
        """After an outage: the sessions' worker channel back into every user group of its
        sessions, once per worker."""
        parts = self._loops.get(asyncio.get_running_loop())
        if parts is not None and parts.user_sessions is not None:
            await parts.user_sessions.groups_renew()

    # -- tasks and teardown ------------------------------------------------------------

    async def heartbeat_renew(self, sessions: list[Any]) -> None:
        """After an outage: beat at once (a restarted Redis has forgotten every heartbeat, and
        this worker's sessions must not look offline until the next regular beat)."""
        await self.heartbeat.beat()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[None]:
        """Run `coro` as a task of the worker's: kept until done (a task nobody references
        may be collected mid-way), cancelled when the hub closes; a failure is logged."""
        task = asyncio.ensure_future(coro)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)
        task.add_done_callback(_failure_log)
        return task

    def tasks(self) -> list[asyncio.Task[None]]:
        """Every task the hub's parts run, not done yet."""
        built = [self._parts[name] for name in ("heartbeat", "presence") if name in self._parts]
        tasks = [*list(self._spawned), *(t for p in [self.health, *built] for t in p.tasks())]
        tasks += [t for parts in list(self._loops.values()) for t in parts.tasks()]
        return [task for task in tasks if not task.done()]

    def close(self) -> None:
        """Cancel every task of the hub's; from any thread (daphne runs its shutdown hooks in
        a thread pool)."""
        for task in self.tasks():
            task_cancel(task)

    async def aclose(self) -> None:
        """`close()`, then wait for the cancelled tasks of the running loop to end."""
        loop = asyncio.get_running_loop()
        mine = [task for task in self.tasks() if task.get_loop() is loop]
        self.close()
        await asyncio.gather(*mine, return_exceptions=True)


def _failure_log(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.error("a worker task failed: %s", task.get_coro(), exc_info=error)


def task_cancel(task: asyncio.Task[None]) -> None:
    """Cancel `task` from its loop's thread or any other."""
    loop = task.get_loop()
    if loop.is_closed():
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if loop.is_running() and running is not loop:
        loop.call_soon_threadsafe(task.cancel)
    else:
        task.cancel()


_current: Hub | None = None
_install_lock = threading.Lock()


def hub() -> Hub:
    """This worker's hub: the installed one; in a process that installed none (a management
    command), one sharing the process's Redis factory, installed on first use."""
    current = _current
    if current is None:
        with _install_lock:
            current = _current
            if current is None:
                current = Hub(redis=redis_clients())
                hub_install(current)
    return current


def hub_install(new: Hub | None) -> Hub | None:
    """Make `new` this worker's hub (None: none); the previous one, for whoever restores it.
    `redis_clients()` (`core.redis`) then answers with its factory."""
    global _current
    previous, _current = _current, new
    redis_clients_source(None if new is None else (lambda: new.redis))
    return previous
