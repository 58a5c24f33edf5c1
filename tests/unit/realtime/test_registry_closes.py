"""realtime.registry_closes: a close alone is written at once; closes that arrive while a
write runs share the next one; each caller returns once its own row is written."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError

from realtime import registry
from realtime.models import WebSocketSession
from realtime.registry_closes import session_record_close_batched
from tests.unit.realtime.sessions import WebSocketSessionFactory

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def writes(monkeypatch) -> list[list[tuple[str, int | None]]]:
    """Every batch handed to the database, in order (the real write still runs)."""
    seen: list[list[tuple[str, int | None]]] = []
    real = registry.asessions_record_close

    async def spy(closes):
        seen.append(list(closes))
        await real(closes)

    monkeypatch.setattr(registry, "asessions_record_close", spy)
    return seen


async def rows(n: int) -> list[str]:
    """`n` open sessions; their ids."""
    return await sync_to_async(lambda: [str(WebSocketSessionFactory().id) for _ in range(n)])()


async def close_codes(ids: list[str]) -> dict[str, int | None]:
    found = WebSocketSession.objects.filter(pk__in=ids, closed_at__isnull=False)
    return {str(pk): code async for pk, code in found.values_list("pk", "close_code")}


async def test_a_close_alone_is_written_before_the_call_returns(writes):
    (session_id,) = await rows(1)

    await session_record_close_batched(session_id=session_id, code=4501)

    assert await close_codes([session_id]) == {session_id: 4501}
    assert writes == [[(session_id, 4501)]]


async def test_closes_issued_together_are_one_write(writes):
    ids = await rows(12)
    codes = [1000, 1001, 4501] * 4

    await asyncio.gather(
        *(
            session_record_close_batched(session_id=i, code=c)
            for i, c in zip(ids, codes, strict=True)
        )
    )

    assert await close_codes(ids) == dict(zip(ids, codes, strict=True))
    assert [len(batch) for batch in writes] == [12]


async def test_closes_arriving_during_a_write_share_the_next_one(monkeypatch):
    ids = await rows(6)
    real = registry.asessions_record_close
    batches: list[int] = []
    writing, release = asyncio.Event(), asyncio.Event()

    async def gated(closes):
        batches.append(len(closes))
        writing.set()
        await release.wait()
        await real(closes)

    monkeypatch.setattr(registry, "asessions_record_close", gated)

    first = asyncio.ensure_future(session_record_close_batched(session_id=ids[0], code=1000))
    await writing.wait()  # the first close's write is running
    later = [
        asyncio.ensure_future(session_record_close_batched(session_id=i, code=1006))
        for i in ids[1:]
    ]
    await asyncio.sleep(0)
    assert not first.done() and not any(task.done() for task in later)
    release.set()
    await asyncio.gather(first, *later)

    assert batches == [1, 5]
    assert await close_codes(ids) == {ids[0]: 1000} | {i: 1006 for i in ids[1:]}


async def test_a_failed_write_raises_to_its_callers_and_the_next_batch_is_written(monkeypatch):
    ids = await rows(2)
    real = registry.asessions_record_close
    calls = 0

    async def fail_once(closes):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OperationalError("database is locked")
        await real(closes)

    monkeypatch.setattr(registry, "asessions_record_close", fail_once)

    with pytest.raises(OperationalError, match="database is locked"):
        await session_record_close_batched(session_id=ids[0], code=1000)
    await session_record_close_batched(session_id=ids[1], code=1006)

    assert await close_codes(ids) == {ids[1]: 1006}
