"""Room history: every publication to a room of a namespace with history, kept in order with
an offset (1, 2, 3 … per room, the same on every worker) and an epoch (which history that
offset belongs to: a new one when the history may have lost writes: Redis restarted, or
failed over to a replica).

With Redis, a room's history is a stream (`switchboard:history:<room>`, at most
`history_size` entries, none older than `history_ttl` seconds, the key gone `history_ttl`
after the last publication) beside a hash holding its epoch and last offset
(`switchboard:history-meta:<room>`, kept `WS_HISTORY_META_TTL` after the last publication,
so a quiet room keeps its offsets). A publication is one Lua script (next offset, append,
trim); a read is one Lua script too (epoch, last offset, the entries asked for), so both are
one round trip and always agree. Without Redis, it lives in this process.

An entry holds the `message` frame without its position (`history_body`); the frame a
subscriber gets, live or replayed, is that body with `"offset"` and `"epoch"` appended
(`frame_with_position`), so a replayed message is byte for byte the live one.
"""

import secrets
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from core.redis import redis_clients, text
from core.redis_script import LuaScript
from realtime import metrics
from realtime.protocol.frames import frame_encode
from realtime.rooms.namespaces import Namespace

KEY_PREFIX = "switchboard:history"

# A room's epoch belongs to the Redis process that wrote it (its run_id): a restart, even
# with persistence, or a failover to a replica may have lost its last writes, and offsets
# given again under the same epoch would pass for duplicates. So a history found under
# another run_id starts a new epoch: subscribers are told `recovered: false`, never misled.
_EPOCH_CHECK = """
local stream, meta = KEYS[1], KEYS[2]
local run = string.match(redis.call('info', 'server'), 'run_id:(%w+)')
local epoch = redis.call('hget', meta, 'epoch')
local created = false
if not epoch or redis.call('hget', meta, 'run') ~= run then
  epoch = ARGV[4]
  created = true
  redis.call('del', stream, meta)
  redis.call('hset', meta, 'epoch', epoch, 'run', run, 'offset', 0)
end
"""

# KEYS: stream, meta. ARGV: body, history_size, history_ttl, a new epoch, meta ttl.
_APPEND = LuaScript(
    _EPOCH_CHECK
    + """
local offset = redis.call('hincrby', meta, 'offset', 1)
redis.call('xadd', stream, 'MAXLEN', ARGV[2], '*', 'o', offset, 'b', ARGV[1])
local now = redis.call('time')
local oldest = (tonumber(now[1]) - tonumber(ARGV[3])) * 1000
if oldest > 0 then redis.call('xtrim', stream, 'MINID', oldest) end
redis.call('expire', stream, ARGV[3])
redis.call('expire', meta, ARGV[5])
return {offset, epoch, redis.call('xlen', stream)}
"""
)

# KEYS: stream, meta. ARGV: history_ttl, since (-1: none), limit, a new epoch, since's epoch.
# The newest entries first: with `since`, the ones after it (at most `limit`), and none
# unless they are all there (the same epoch, the oldest kept at most `since` + 1), so a
# recovery that cannot succeed reads nothing. A room only read, never published to, keeps
# its epoch `history_ttl` seconds (a publication keeps it WS_HISTORY_META_TTL): reads of
# made-up room names leave nothing behind for long.
_READ = LuaScript(
    _EPOCH_CHECK
    + """
if created then redis.call('expire', meta, ARGV[1]) end
local top = tonumber(redis.call('hget', meta, 'offset') or '0')
local now = redis.call('time')
local oldest = (tonumber(now[1]) - tonumber(ARGV[1])) * 1000
if oldest > 0 then redis.call('xtrim', stream, 'MINID', oldest) end
local count = tonumber(ARGV[3])
local since = tonumber(ARGV[2])
if since >= 0 then
  count = math.min(count, top - since)
  if ARGV[5] ~= epoch then count = 0 end
  if count > 0 then
    local first = redis.call('xrange', stream, '-', '+', 'COUNT', 1)
    if #first == 0 or tonumber(first[1][2][2]) > since + 1 then count = 0 end
  end
end
local entries = {}
if count > 0 then entries = redis.call('xrevrange', stream, '+', '-', 'COUNT', count) end
return {epoch, top, entries}
"""
)


@dataclass(frozen=True)
class Position:
    """Where a room's history stands: its last offset (0: nothing yet) in its epoch."""

    offset: int
    epoch: str


@dataclass(frozen=True)
class Entry:
    offset: int
    body: str  # the `message` frame without its position


@dataclass(frozen=True)
class HistoryRead:
    """A room's position and the entries read, oldest first."""

    top: Position
    entries: list[Entry] = field(default_factory=list)

    def frames(self) -> list[str]:
        return [frame_with_position(e.body, e.offset, self.top.epoch) for e in self.entries]

    def recovers(self, since: Position) -> bool:
        """Whether these entries are every message after `since`: the same epoch, and the
        history still reaches back to the one after it."""
        top, entries = self.top, self.entries
        if since.epoch != top.epoch or not 0 <= since.offset <= top.offset:
            return False
        wanted = top.offset - since.offset
        return len(entries) == wanted and (
            wanted == 0
            or (entries[0].offset == since.offset + 1 and entries[-1].offset == top.offset)
        )


def history_body(event: dict[str, Any]) -> str:
    """The `message` frame of a `room.message` event without its position (what is stored)."""
    return frame_encode(
        "message",
        channel=event["channel"],
        data=event["data"],
        ts=event["ts"],
        **{"from": event["from"]},
    )


def frame_with_position(body: str, offset: int, epoch: str) -> str:
    """`body` (a JSON object's text) with `"offset"` and `"epoch"` as its last fields."""
    return f'{body[:-1]},"offset":{offset},"epoch":"{epoch}"}}'


def epoch_new() -> str:
    """A fresh epoch name: the milliseconds since 1970 in 11 hex digits, then 4 random ones,
    so that a later epoch sorts after an earlier one (`epoch_newer`)."""
    return f"{time.time_ns() // 1_000_000:011x}{secrets.token_hex(2)}"


def epoch_newer(epoch: str, than: str) -> bool:
    """Whether `epoch` began after `than` (a message of an older history that was still on
    its way must never send a room back to it)."""
    return (len(epoch), epoch) > (len(than), than)


def _keys(channel: str) -> list[str]:
    return [f"{KEY_PREFIX}:{channel}", f"{KEY_PREFIX}-meta:{channel}"]


def _meta_ttl(namespace: Namespace) -> int:
    return max(int(settings.WS_HISTORY_META_TTL), namespace.history_ttl)


def _appended(namespace: Namespace, offset: int, epoch: bytes | str, length: int) -> Position:
    metrics.labelled(metrics.HISTORY_PUBLISHED, namespace.name).inc()
    metrics.labelled(metrics.HISTORY_LENGTH, namespace.name).observe(length)
    return Position(int(offset), text(epoch))


def _read_of(answer: Sequence[Any]) -> HistoryRead:
    epoch, top, newest_first = answer
    entries = []
    for _entry_id, fields in reversed(newest_first):
        values = {text(k): v for k, v in zip(fields[::2], fields[1::2], strict=True)}
        entries.append(Entry(int(values["o"]), text(values["b"])))
    return HistoryRead(Position(int(top), text(epoch)), entries)


class RedisHistory:
    """Room history in Redis, on the factory's clients (it follows a Sentinel failover)."""

    def _append_args(self, namespace: Namespace, body: str) -> list[Any]:
        return [
            body,
            namespace.history_size,
            namespace.history_ttl,
            epoch_new(),
            _meta_ttl(namespace),
        ]

    async def append(self, channel: str, namespace: Namespace, body: str) -> Position:
        """Store one publication; its position. Raises when Redis cannot store it."""
        client = redis_clients().async_client()
        answer = await _APPEND.run(client, _keys(channel), self._append_args(namespace, body))
        return _appended(namespace, *answer)

    def append_sync(self, channel: str, namespace: Namespace, body: str) -> Position:
        """`append` for sync code (server-side publishing)."""
        client = redis_clients().sync_client()
        answer = _APPEND.run_sync(client, _keys(channel), self._append_args(namespace, body))
        return _appended(namespace, *answer)

    async def read(
        self,
        channel: str,
        namespace: Namespace,
        *,
        since: int | None = None,
        since_epoch: str = "",
        limit: int,
    ) -> HistoryRead:
        """The room's position and its last `limit` entries, or, with `since`, the entries
        after offset `since` (at most `limit`) when they are all there in `since_epoch`."""
        args: list[object] = [namespace.history_ttl, -1 if since is None else since, limit]
        args += [epoch_new(), since_epoch]
        answer = await _READ.run(redis_clients().async_client(), _keys(channel), args)
        return _read_of(answer)


@dataclass
class _MemoryRoom:
    offset: int = 0
    entries: deque[tuple[int, float, str]] = field(default_factory=deque)


class MemoryHistory:
    """Room history in this process (no REDIS_URL: the process is the only worker). Its one
    epoch is the process's: the history goes with it."""

    def __init__(self) -> None:
        self.epoch = epoch_new()
        self._rooms: dict[str, _MemoryRoom] = {}
        self._lock = threading.Lock()  # sync publishing runs in other threads

    def _trimmed(self, channel: str, namespace: Namespace) -> _MemoryRoom | None:
        room = self._rooms.get(channel)
        if room is not None:
            oldest = time.monotonic() - namespace.history_ttl
            while room.entries and room.entries[0][1] < oldest:
                room.entries.popleft()
        return room

    def append_sync(self, channel: str, namespace: Namespace, body: str) -> Position:
        with self._lock:
            room = self._trimmed(channel, namespace) or self._rooms.setdefault(
                channel, _MemoryRoom()
            )
            room.offset += 1
            room.entries.append((room.offset, time.monotonic(), body))
            while len(room.entries) > namespace.history_size:
                room.entries.popleft()
            return _appended(namespace, room.offset, self.epoch, len(room.entries))

    async def append(self, channel: str, namespace: Namespace, body: str) -> Position:
        return self.append_sync(channel, namespace, body)

    async def read(
        self,
        channel: str,
        namespace: Namespace,
        *,
        since: int | None = None,
        since_epoch: str = "",
        limit: int,
    ) -> HistoryRead:
        with self._lock:
            room = self._trimmed(channel, namespace) or _MemoryRoom()  # a read stores nothing
            count = limit if since is None else min(limit, room.offset - since)
            if since is not None and since_epoch != self.epoch:
                count = 0
            chosen = list(room.entries)[-count:] if count > 0 else []
            top = Position(room.offset, self.epoch)
        return HistoryRead(top, [Entry(offset, body) for offset, _, body in chosen])
