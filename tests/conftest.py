"""Root fixtures: users from a factory, tokens built with simplejwt (or forged with PyJWT)."""

import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import factory
import jwt
import pytest
from channels.layers import channel_layers
from django.conf import settings as django_settings

from accounts.login_throttle import login_throttle
from accounts.models import User
from accounts.tokens import VERSION_CLAIM, AccessToken, RefreshToken
from realtime.hub import Hub, hub_install

PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    """An active user whose password is PASSWORD."""

    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password(PASSWORD)
    is_active = True


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    """Tests hash many passwords; the production hasher's cost buys nothing here."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def fresh_login_throttle():
    """Each test gets its own login-failure memory (the throttle is built once per process)."""
    login_throttle.cache_clear()
    yield
    login_throttle.cache_clear()


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """Each test gets a new in-memory channel layer (its queues belong to one event loop)."""
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def fresh_cache():
    """Each test starts with an empty cache: the test database reuses primary keys after a
    flush, so a revocation floor left by one test would apply to the next test's user 1."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def worker_hub() -> Iterator[Hub]:
    """Each test runs on a hub of its own (`realtime.hub`: the Redis clients, layer health and
    its recovery hooks, heartbeat, presence, connection rate, tickets, room fan-out…), its
    parts built on first use from the settings the test set; the previous hub is back after."""
    fresh = Hub()
    previous = hub_install(fresh)
    yield fresh
    fresh.close()
    hub_install(previous)


@pytest.fixture
def plain_static_files(settings):
    """The admin's templates name static files; unit tests run without collectstatic."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def user(db) -> User:
    return UserFactory(username="alice", email="alice@example.com")


@pytest.fixture
def other_user(db) -> User:
    return UserFactory(username="bob", email="bob@example.com")


# -- tokens -------------------------------------------------------------------------------


def access_for(user: User, *, lifetime: timedelta | None = None, **claims: Any) -> AccessToken:
    """An access token as the app issues it (version claim included), with optional edits."""
    token = AccessToken.for_user(user)
    token[VERSION_CLAIM] = user.token_version
    if lifetime is not None:
        token.set_exp(lifetime=lifetime)
    for name, value in claims.items():
        token[name] = value
    return token


def refresh_for(user: User, *, lifetime: timedelta | None = None) -> RefreshToken:
    """A refresh token as the app issues it (recorded as outstanding)."""
    token = RefreshToken.for_user(user)
    if lifetime is not None:
        token.set_exp(lifetime=lifetime)
    return token


def valid_claims(user: User, **changes: Any) -> dict[str, Any]:
    """The claims of a good access token for `user`; `changes` edit them (None removes one)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "token_type": "access",
        "exp": now + 300,
        "iat": now,
        "jti": uuid.uuid4().hex,
        "user_id": str(user.pk),
        VERSION_CLAIM: user.token_version,
        "iss": django_settings.SIMPLE_JWT["ISSUER"],
        "aud": django_settings.SIMPLE_JWT["AUDIENCE"],
    }
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def forge(
    claims: dict[str, Any],
    *,
    key: Any = None,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
) -> str:
    """A JWT signed by PyJWT; the real signing key unless `key` is given."""
    key = django_settings.SIMPLE_JWT["SIGNING_KEY"] if key is None else key
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hmac_signed_with_header(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A JWT whose header says anything (e.g. RS256) but is HMAC-SHA256-signed with our key."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    key = django_settings.SIMPLE_JWT["SIGNING_KEY"].encode()
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def signature_broken(raw: str) -> str:
    """The same header and claims with a signature that does not match."""
    head, body, signature = raw.split(".")
    flipped = "A" if signature[0] != "A" else "B"
    return f"{head}.{body}.{flipped}{signature[1:]}"


def _children(pid: int) -> list[tuple[int, str]]:
    """Live child processes of `pid` (from /proc), with their command lines."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in map(int, children):
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            except FileNotFoundError:
                continue
            found.append((child, cmdline.decode(errors="replace").strip()))
    return found


def pytest_sessionfinish(session, exitstatus):
    """The suite must leave no process behind: every server a test started is stopped."""
    leftovers = [(pid, cmd) for pid, cmd in _children(os.getpid()) if cmd]
    if leftovers:
        lines = "\n".join(f"  pid {pid}: {cmd[:120]}" for pid, cmd in leftovers)
        session.config.get_terminal_writer().line(f"processes left behind:\n{lines}", red=True)
        session.exitstatus = 1
