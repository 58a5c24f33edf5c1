"""The system tests' databases: a SQLite file, or (DATABASE_URL=postgres://…) PostgreSQL."""

import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

# Tables a locked database must refuse: the user lookup and the readiness read.
LOCKED_TABLES = ("accounts_user", "django_migrations")


def postgres_server_url() -> str | None:
    """The PostgreSQL URL the suite runs against, or None on SQLite."""
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith(("postgres://", "postgresql://")) else None


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _admin(url: str) -> psycopg.Connection:
    return psycopg.connect(_with_database(url, "postgres"), autocommit=True)


def database_create(server_url: str) -> str:
    """A new, empty PostgreSQL database on the server; its URL."""
    name = f"switchboard_system_{uuid.uuid4().hex[:12]}"
    with _admin(server_url) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return _with_database(server_url, name)


def database_drop(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with _admin(url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_with_timeout(url: str, seconds: int) -> str:
    """`url` with a per-query time limit (SQLite's busy timeout, PostgreSQL's statement_timeout)."""
    if url.startswith("sqlite"):
        return f"{url}?timeout={seconds}"
    return f"{url}?options=-c%20statement_timeout%3D{seconds * 1000}"


@contextmanager
def database_locked(url: str, tables: tuple[str, ...] = LOCKED_TABLES) -> Iterator[None]:
    """Hold a lock that stops every other connection reading `tables` (SQLite: every table)."""
    if url.startswith("sqlite"):
        connection = sqlite3.connect(Path(url.removeprefix("sqlite:///")), isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            connection.execute("ROLLBACK")
            connection.close()
        return
    with psycopg.connect(url) as connection:
        connection.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            connection.rollback()
