"""Session-registry writes commit without waiting for the WAL flush, and nothing else does."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from realtime.registry.services import commit_without_flush


def synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL setting")
def test_only_the_registry_transaction_skips_the_flush_on_postgresql():
    assert synchronous_commit() == "on"
    with transaction.atomic():
        commit_without_flush()
        assert synchronous_commit() == "off"
    assert synchronous_commit() == "on"  # SET LOCAL: the next transaction is durable again


@pytest.mark.django_db(transaction=True)
def test_elsewhere_it_changes_nothing_and_runs_no_query():
    if connection.vendor == "postgresql":
        pytest.skip("the PostgreSQL case is the test above")
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        commit_without_flush()
    assert queries.captured_queries == []
