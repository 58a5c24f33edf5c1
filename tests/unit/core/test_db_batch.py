"""core.db_batch.Batcher: every caller gets its own result or the shared error, and
nobody waits forever, even when the shared call is cancelled."""

import asyncio

import pytest

from core.db_batch import Batcher

pytestmark = pytest.mark.asyncio


async def test_each_caller_gets_the_result_for_its_own_key():
    async def run(keys):
        return {key: key * 10 for key in keys if key != 3}

    batcher = Batcher(run)

    assert await asyncio.gather(*(batcher.call(k) for k in (1, 2, 3, 1))) == [10, 20, None, 10]


async def test_a_cancelled_call_fails_its_callers_and_the_queued_ones_instead_of_hanging():
    started, release = asyncio.Event(), asyncio.Event()

    async def run(keys):
        started.set()
        await release.wait()
        return dict.fromkeys(keys, "ok")

    batcher = Batcher(run)
    first = asyncio.ensure_future(batcher.call(1))
    await started.wait()
    queued = asyncio.ensure_future(batcher.call(2))  # waits for the next call
    await asyncio.sleep(0)
    batcher.runner.cancel()

    results = await asyncio.wait_for(
        asyncio.gather(first, queued, return_exceptions=True), timeout=2
    )

    assert [type(r).__name__ for r in results] == ["RuntimeError", "RuntimeError"]
    assert str(results[0]) == "database call CancelledError"
    release.set()
    assert await asyncio.wait_for(batcher.call(3), timeout=2) == "ok"  # a new runner
