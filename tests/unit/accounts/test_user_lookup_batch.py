"""accounts.tokens.user_by_id: the lookups of concurrent handshakes share one query."""

import asyncio

import pytest
from asgiref.sync import sync_to_async

from accounts import tokens
from tests.conftest import UserFactory

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def queries(monkeypatch) -> list[list[int]]:
    """The ids of every query made (the real query still runs)."""
    made: list[list[int]] = []
    real = tokens.users_by_id

    async def spy(user_ids):
        made.append(sorted(user_ids))
        return await real(user_ids)

    monkeypatch.setattr(tokens, "users_by_id", spy)
    return made


async def test_concurrent_lookups_share_one_query_and_each_gets_its_user(queries):
    alice, bob = await sync_to_async(lambda: (UserFactory(), UserFactory()))()
    missing = bob.pk + 1000

    found = await asyncio.gather(
        *(tokens.user_by_id(pk) for pk in (alice.pk, bob.pk, alice.pk, missing, bob.pk))
    )

    assert [user.pk if user else None for user in found] == [
        alice.pk,
        bob.pk,
        alice.pk,
        None,
        bob.pk,
    ]
    assert queries == [sorted([alice.pk, bob.pk, missing])]


async def test_a_lookup_alone_is_its_own_query(queries):
    alice = await sync_to_async(UserFactory)()

    assert (await tokens.user_by_id(alice.pk)).username == alice.username
    assert (await tokens.user_by_id(alice.pk)).username == alice.username
    assert queries == [[alice.pk], [alice.pk]]
