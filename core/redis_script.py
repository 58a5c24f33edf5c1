"""A Lua script run on whichever Redis client the caller holds (the factory's, per loop)."""

from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript, Script


class LuaScript:
    """One Lua script: EVALSHA, loading it first where the server does not know it (a new or
    restarted Redis, a promoted replica). Given as bytes, its SHA needs no client."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._async = AsyncScript(None, source.encode())  # type: ignore[arg-type]
        self._sync = Script(None, source.encode())  # type: ignore[arg-type]

    async def run(self, client: aioredis.Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._async(keys=keys, args=args, client=client)

    def run_sync(self, client: redis.Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return self._sync(keys=keys, args=args, client=client)
