"""Whether this worker's channel layer (Redis) is reachable, shard by shard, and recovery
when a shard comes back.

The layer is one Redis, or several shards (REDIS_LAYER_URLS): channels-redis puts each group
and each worker's channels on one shard by a hash of the name. A failed operation on a named
group or channel marks its shard down (with one shard, any failure marks the layer down); a
failure that cannot be placed (a group send touches the group's shard and each member's) has
the monitor probe every shard. While a shard is down, only what lives on it waits: a session
whose channel is there pauses its receiving, a join to a group there is left to recovery; the
rest goes on. A single monitor task pings the shards every second, so thousands of sessions
are not all retrying at once. When a shard answers again, or restarted and forgot its groups
(its `run_id` changed), every open session of this worker rejoins its groups, so revocations
reach it again.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.layers import get_channel_layer
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.redis import redis_error_reason, redis_is_down
from core.redis_address import address_of
from realtime.metrics import LAYER_FAILURES, LAYER_OPERATIONS, LAYER_SHARDS_DOWN, label

logger = logging.getLogger("switchboard.realtime")

MONITOR_INTERVAL = 1.0
PROBE_TIMEOUT = 2.0
Rejoin = Callable[[], Awaitable[object]]
Probe = str | None | BaseException  # a shard's run id, None in memory, or why it failed


async def shard_probes(layer: Any) -> list[Probe]:
    """Each shard's run id (it changes when that Redis restarts), or the error that says it
    cannot answer; one None for the in-memory layer."""
    if not hasattr(layer, "connection") or not hasattr(layer, "ring_size"):
        return [None]

    async def probe(index: int) -> str | None:
        info = await asyncio.wait_for(layer.connection(index).info("server"), PROBE_TIMEOUT)
        run_id: str | None = info.get("run_id")
        return run_id

    results = await asyncio.gather(
        *(probe(i) for i in range(layer.ring_size)), return_exceptions=True
    )
    return list(results)


def _timeout(error: BaseException) -> bool:
    return isinstance(error, TimeoutError | RedisTimeoutError)


def ring_size() -> int:
    return int(getattr(get_channel_layer(), "ring_size", 1))


def shard_name(index: int) -> str:
    """A shard as the log names it: its address without credentials, or its position."""
    hosts = getattr(get_channel_layer(), "hosts", None) or []
    if ring_size() == 1 or index >= len(hosts):
        return "the channel layer"
    host = hosts[index]
    where = address_of(host["address"]) if "address" in host else host.get("master_name")
    return f"shard {index + 1} of {len(hosts)} ({where})"


class LayerHealth:
    """Worker-wide state of the channel layer's shards, shared by every consumer of this
    worker (held by its hub, `realtime.hub`, which registers the recovery hooks)."""

    def __init__(self) -> None:
        self.down: set[int] = set()  # shards known unreachable
        self._up: dict[int, asyncio.Event] = {}
        self._monitor: asyncio.Task[None] | None = None
        self._identity: dict[int, str | None] = {}
        self._misses: dict[int, int] = {}
        self.sessions: dict[object, Rejoin] = {}
        # Called with the open sessions after they rejoined: events sent meanwhile were lost.
        self.recovery_hooks: list[Callable[[list[Any]], Awaitable[None]]] = []
        # Group leaves that could not reach their shard: replayed first on recovery, or this
        # worker would stay in groups it left (a shard may keep its data through an outage).
        self.pending_leaves: list[Callable[[], Awaitable[None]]] = []

    @property
    def available(self) -> bool:
        """Whether every shard is reachable."""
        return not self.down

    def available_for(self, name: str) -> bool:
        """Whether the shard that holds the group or channel `name` is reachable."""
        return not self.down or self.shard_of(name) not in self.down

    @staticmethod
    def shard_of(name: str) -> int:
        layer = get_channel_layer()
        if int(getattr(layer, "ring_size", 1)) == 1:
            return 0
        index: int = layer.consistent_hash(name)  # type: ignore[union-attr]
        return index

    def _event(self, shard: int) -> asyncio.Event:
        event = self._up.get(shard)
        if event is None:
            event = self._up[shard] = asyncio.Event()
            if shard not in self.down:
                event.set()
        return event

    def failed(self, operation: str, error: BaseException, name: str | None = None) -> None:
        """Record a failed layer operation on the group or channel `name` (None: it cannot be
        placed on one shard). One that shows Redis unreachable (a connection error or
        timeout, not a busy pool: `core.redis.redis_is_down`) marks that shard down; with one
        shard, every such failure does; an unplaced one has the monitor probe them all."""
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
        if ring_size() == 1:
            self._mark_down(0, operation, error)
        elif name is not None:
            self._mark_down(self.shard_of(name), operation, error)
        self.monitor_start()

    def _mark_down(self, shard: int, operation: str, error: BaseException) -> None:
        if shard in self.down:
            return
        self.down.add(shard)
        self._event(shard).clear()
        LAYER_SHARDS_DOWN.set(len(self.down))
        where = shard_name(shard)
        logger.error(
            "channel layer unreachable (%s: %s failed: %s); sessions stay open, cross-worker "
            "delivery through it paused until it is back",
            where,
            operation,
            redis_error_reason(error),
        )

    async def wait_up(self, name: str | None = None) -> None:
        """Return at once while the shard of `name` (None: every shard) is up; otherwise when
        the monitor sees it back."""
        if name is not None:
            await self._event(self.shard_of(name)).wait()
            return
        while self.down:
            await self._event(next(iter(self.down))).wait()

    async def receive(self, layer: Any, channel: str) -> dict[str, Any]:
        """The next event on `channel` of `layer`; waits out outages of its shard (a receive
        that fails marks the shard down)."""
        while True:
            await self.wait_up(channel)
            try:
                event: dict[str, Any] = await layer.receive(channel)
            except Exception as e:
                self.failed("receive", e, channel)
                continue
            return event

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
        while self.sessions or self.pending_leaves or self.down:
            probes = await shard_probes(layer)
            back = self._probes_read(probes)
            if back:
                self.down -= back
                for shard in back:
                    self._event(shard).set()
                LAYER_SHARDS_DOWN.set(len(self.down))
                logger.warning(
                    "channel layer reachable again (%s); %d session(s) rejoining their groups",
                    ", ".join(shard_name(shard) for shard in sorted(back)),
                    len(self.sessions),
                )
                await self._rejoin_all()
            elif self.pending_leaves and not any(isinstance(p, BaseException) for p in probes):
                # Leaves that failed while Redis was only busy: replayed once every shard
                # answers (a leave that fails now is dropped).
                await self._leaves_run()
            if probes == [None] and not self.down:
                return  # the in-memory layer cannot fail or restart: nothing to watch
            await asyncio.sleep(MONITOR_INTERVAL)

    def _probes_read(self, probes: list[Probe]) -> set[int]:
        """Mark the shards that fail down; the ones that are back (or restarted empty)."""
        back: set[int] = set()
        for shard, probe in enumerate(probes):
            if isinstance(probe, BaseException):
                misses = self._misses[shard] = self._misses.get(shard, 0) + 1
                # An outage nobody's operation noticed still loses revocations: mark it, so
                # that recovery rejoins and rechecks. A refused connection says it at once;
                # a slow answer may be this worker's own load, so only a run of them does.
                noticed = redis_is_down(probe) and (not _timeout(probe) or misses >= 3)
                if noticed and shard not in self.down:
                    LAYER_FAILURES.labels(label("monitor", LAYER_OPERATIONS)).inc()
                    self._mark_down(shard, "monitor", probe)
                continue
            self._misses[shard] = 0
            known = self._identity.get(shard)
            self._identity[shard] = probe
            restarted = known is not None and probe != known
            if shard in self.down or restarted:
                back.add(shard)
        return back

    def defer_leave(self, leave: Callable[[], Awaitable[None]]) -> None:
        """Run `leave` once the layer is reachable again."""
        self.pending_leaves.append(leave)
        self.monitor_start()

    async def leave_now_or_later(self, leave: Callable[[], Awaitable[None]], name: str) -> None:
        """Run `leave` of the group `name` now; while its shard is down, or when it fails,
        once the layer is back."""
        if not self.available_for(name):
            return self.defer_leave(leave)
        try:
            await leave()
        except Exception as e:
            self.failed("group_discard", e, name)
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
