"""Database calls of many coroutines made together: whatever arrives while one call runs goes
into the next.

A worker runs its database calls one at a time on one thread (`database_sync_to_async`), so
under a burst of handshakes each small query (a user lookup, a session close) waited for all
the ones before it, each with its own thread hop and round trips. Alone, a call runs at once,
as before; under load, the calls that piled up meanwhile share one query. Each caller waits
for its own result (or the exception the shared call raised).
"""

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")

BatchCall = Callable[[list[K]], Awaitable[Mapping[K, R] | None]]


class Batcher(Generic[K, R]):
    """`call(key)` → `run(keys)[key]`, with the keys of concurrent callers run together, on
    one event loop."""

    def __init__(self, run: BatchCall[K, R]) -> None:
        self.run = run
        self.pending: list[tuple[K, asyncio.Future[R | None]]] = []
        self.runner: asyncio.Task[None] | None = None

    async def call(self, key: K) -> R | None:
        """This key's result (None when `run` returns no mapping or omits the key)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[R | None] = loop.create_future()
        self.pending.append((key, done))
        if self.runner is None or self.runner.done():
            self.runner = loop.create_task(self._run_all())
        # A caller that gives up (a timeout) leaves its key in the batch: it still runs.
        return await asyncio.shield(done)

    async def _run_all(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            try:
                results = await self.run(list(dict.fromkeys(key for key, _ in batch)))
            except Exception as e:
                _fail(batch, e)
            except BaseException as e:  # cancelled (the loop is closing): nobody may hang
                _fail(batch + self.pending, RuntimeError(f"database call {type(e).__name__}"))
                self.pending = []
                raise
            else:
                for key, done in batch:
                    if not done.done():
                        done.set_result(results.get(key) if results is not None else None)


def _fail(batch: Sequence[tuple[object, asyncio.Future[Any]]], error: Exception) -> None:
    for _, done in batch:
        if not done.done():
            done.set_exception(error)
            done.exception()  # retrieved: a caller that gave up must not warn


def loop_batcher(
    batchers: dict[asyncio.AbstractEventLoop, Batcher[K, R]], run: BatchCall[K, R]
) -> Batcher[K, R]:
    """The batcher of the running event loop in `batchers` (made on first use; those of
    closed loops dropped)."""
    loop = asyncio.get_running_loop()
    if loop not in batchers:
        for closed in [other for other in batchers if other.is_closed()]:
            del batchers[closed]
        batchers[loop] = Batcher(run)
    return batchers[loop]
