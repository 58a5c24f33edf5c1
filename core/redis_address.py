"""A Redis server's address as an operator reads it, credentials left out."""

from urllib.parse import urlsplit


def address_of(url: str) -> str:
    """`scheme://host:port/db` of a Redis URL, without its user or password (what workers
    compare, and what logs may say)."""
    parts = urlsplit(url)
    db = parts.path.strip("/") or "0"
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}/{db}"
