"""A coroutine run on a fixed interval for as long as its task lives."""

import asyncio
from collections.abc import Awaitable, Callable


async def periodically(seconds: float, run: Callable[[], Awaitable[None]]) -> None:
    """Await `run()` every `seconds` (the first time one interval from now), until cancelled."""
    while True:
        await asyncio.sleep(seconds)
        await run()
