"""Whether this worker's channel layer (Redis) is reachable, and recovery when it comes back.

The first failed layer operation marks the layer down. From then on a single monitor task
pings it every second, so thousands of sessions are not all retrying at once. When the
layer answers again, or Redis restarted and forgot every group (its `run_id` changed), every
open session of this worker rejoins its groups, so revocations reach it again.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.layers import get_channel_layer
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.redis import redis_error_reason, redis_is_down
from realtime.metrics import LAYER_FAILURES, LAYER_OPERATIONS, label

logger = logging.getLogger("switchboard.realtime")

MONITOR_INTERVAL = 1.0
Rejoin = Callable[[], Awaitable[object]]


async def layer_identity(layer: Any) -> tuple[str, ...] | None:
    """Something that changes when a Redis server restarts (its run ids); None in memory."""
    if not hasattr(layer, "connection") or not hasattr(layer, "ring_size"):
        return None
    ids = []
    for index in range(layer.ring_size):
        info = await asyncio.wait_for(layer.connection(index).info("server"), timeout=2)
        ids.append(info.get("run_id"))
    return tuple(ids)


def _timeout(error: BaseException) -> bool:
    return isinstance(error, TimeoutError | RedisTimeoutError)


class LayerHealth:
    """Worker-wide state of the channel layer, shared by every consumer of this worker (held
    by its hub, `realtime.hub`, which registers the recovery hooks)."""

    def __init__(self) -> None:
        self.available = True
        self._up: asyncio.Event | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._identity: tuple[str, ...] | None = None
        self.sessions: dict[object, Rejoin] = {}
        # Called with the open sessions after they rejoined: events sent meanwhile were lost.
        self.recovery_hooks: list[Callable[[list[Any]], Awaitable[None]]] = []
        # Leaves that could not reach Redis: replayed first on recovery, or the left rooms
        # would keep ghost members (Redis may have kept its data through a short outage).
        self.pending_leaves: list[Callable[[], Awaitable[None]]] = []

    @property
    def up(self) -> asyncio.Event:
        if self._up is None:
            self._up = asyncio.Event()
            self._up.set()
        return self._up

    def failed(self, operation: str, error: BaseException) -> None:
        """Record a failed layer operation; the first one that shows Redis unreachable (a
        connection error or timeout, not a busy pool: `core.redis.redis_is_down`) marks the
        layer down."""
        LAYER_FAILURES.labels(label(operation, LAYER_OPERATIONS)).inc()
        if not redis_is_down(error):
            # Redis answers (or this worker is only short of connections): the one operation
            # failed, nobody else's delivery pauses. A deferred leave is retried by the monitor.
            logger.warning(
                "channel layer %s failed (%s); Redis is not down, delivery goes on",
                operation,
                type(error).__name__,
            )
            self.monitor_start()
            return
        if self.available:
            self.available = False
            self.up.clear()
            logger.error(
                "channel layer unreachable (%s failed: %s); sessions stay open, cross-worker "
                "delivery paused until it is back",
                operation,
                redis_error_reason(error),
            )
        self.monitor_start()

    async def wait_up(self) -> None:
        """Return at once while the layer is up; otherwise when the monitor sees it back."""
        await self.up.wait()

    def register(self, key: object, rejoin: Rejoin) -> None:
        """Track an open session: `rejoin` re-adds it to its groups after an outage."""
        self.sessions[key] = rejoin
        self.monitor_start()

    def unregister(self, key: object) -> None:
        self.sessions.pop(key, None)

    def tasks(self) -> list[asyncio.Task[None]]:
        """The task this runs (the monitor), for the hub to cancel when it closes."""
        return [self._monitor] if self._monitor is not None else []

    def monitor_start(self) -> None:
        if self._monitor is None or self._monitor.done():
            self._monitor = asyncio.get_running_loop().create_task(self._monitor_run())

    async def _monitor_run(self) -> None:
        layer = get_channel_layer()
        misses = 0
        while self.sessions or self.pending_leaves or not self.available:
            try:
                identity = await layer_identity(layer)
            except Exception as e:  # down (or slow): try again next tick
                misses += 1
                # An outage nobody's operation noticed still loses revocations: mark it, so
                # that recovery rejoins and rechecks. A refused connection says it at once;
                # a slow answer may be this worker's own load, so only a run of them does.
                if self.available and redis_is_down(e) and (not _timeout(e) or misses >= 3):
                    self.failed("monitor", e)
                await asyncio.sleep(MONITOR_INTERVAL)
                continue
            misses = 0
            restarted = self._identity is not None and identity != self._identity
            self._identity = identity
            if not self.available or restarted:
                self.available = True
                self.up.set()
                logger.warning(
                    "channel layer reachable again%s; %d session(s) rejoining their groups",
                    " (Redis restarted)" if restarted else "",
                    len(self.sessions),
                )
                await self._rejoin_all()
            elif self.pending_leaves:  # leaves that failed while Redis was only busy
                await self._leaves_run()
            if identity is None and self.available:
                return  # the in-memory layer cannot fail or restart: nothing to watch
            await asyncio.sleep(MONITOR_INTERVAL)

    def defer_leave(self, leave: Callable[[], Awaitable[None]]) -> None:
        """Run `leave` once the layer is reachable again."""
        self.pending_leaves.append(leave)
        self.monitor_start()

    async def leave_now_or_later(self, leave: Callable[[], Awaitable[None]]) -> None:
        """Run `leave` now; while the layer is down, or when it fails, once it is back."""
        if not self.available:
            return self.defer_leave(leave)
        try:
            await leave()
        except Exception as e:
            self.failed("group_discard", e)
            self.defer_leave(leave)

    async def _leaves_run(self) -> None:
        leaves, self.pending_leaves = self.pending_leaves, []
        for leave in leaves:
            try:
                await leave()
            except Exception:
                logger.exception("a deferred leave failed")

    async def _rejoin_all(self) -> None:
        await self._leaves_run()
        for rejoin in list(self.sessions.values()):
            await rejoin()
        for hook in self.recovery_hooks:
            try:
                await hook(list(self.sessions))
            except Exception:
                logger.exception("recovery hook %s failed", getattr(hook, "__name__", hook))
