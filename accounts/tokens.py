"""Token rules shared by REST and WebSocket: one raw token in, one user out, or a named error."""

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import jwt
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import DatabaseError
from rest_framework_simplejwt.exceptions import ExpiredTokenError, TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import AccessToken as SimpleAccessToken
from rest_framework_simplejwt.tokens import RefreshToken as SimpleRefreshToken
from rest_framework_simplejwt.tokens import Token

from accounts.jwt_keys import RotatingTokenBackend, token_backend
from accounts.models import User
from core.async_cache import cache_get
from core.db_batch import Batcher, loop_batcher
from core.degrade import Degradation

VERSION_CLAIM = "ver"
# A verified access token, or the claims a WebSocket ticket carried over from one.
Claims = Token | Mapping[str, Any]
logger = logging.getLogger("switchboard.security")


def revoked_jti_key(jti: object) -> str:
    """The shared-cache key marking one access token (by `jti`) revoked until it expires."""
    return f"switchboard:revoked-jti:{jti}"


def access_token_revoked(claims: Claims) -> bool:
    """Whether this access token was revoked on its own (logout). A list that cannot be read
    raises AuthUnavailable: a token is never taken for unrevoked unchecked."""
    try:
        revoked = cache.get(revoked_jti_key(claims.get("jti"))) is not None
    except Exception as e:
        raise _revoked_list_unreadable(e) from e
    REVOKED_LIST.answered()
    return revoked


async def aaccess_token_revoked(claims: Claims) -> bool:
    """`access_token_revoked` from async code."""
    try:
        revoked = await cache_get(revoked_jti_key(claims.get("jti"))) is not None
    except Exception as e:
        raise _revoked_list_unreadable(e) from e
    REVOKED_LIST.answered()
    return revoked


class TokenRejected(Exception):
    """The token cannot be used. `code` is the protocol error code, `reason` is for logs."""

    code = "unauthorized"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TokenExpired(TokenRejected):
    """The token was genuine but its `exp` has passed."""

    code = "token_expired"


class AuthUnavailable(TokenRejected):
    """The token could not be checked now (the database failed or was too slow)."""

    code = "unavailable"


# Without the revoked-token list no access token is accepted (REST 503, WebSocket 1013).
REVOKED_LIST = Degradation(
    "revoked_tokens", answer="refused", rule="access tokens are refused (503 / close 1013)"
)


def _revoked_list_unreadable(error: Exception) -> "AuthUnavailable":
    REVOKED_LIST.fell_back(error)
    return AuthUnavailable(f"revoked-token list unreadable ({type(error).__name__})")


class AccessToken(SimpleAccessToken):
    """simplejwt's access token, signed and verified with rotating keys (`accounts.jwt_keys`)."""

    def get_token_backend(self) -> RotatingTokenBackend:
        return token_backend()


class RefreshToken(SimpleRefreshToken):
    """simplejwt's refresh token, stamped with the user's token version (copied into access),
    signed and verified with rotating keys."""

    access_token_class = AccessToken

    def get_token_backend(self) -> RotatingTokenBackend:
        return token_backend()

    @classmethod
    # simplejwt accepts any user model; Switchboard's is the one with a token version.
    def for_user(cls, user: User) -> "RefreshToken":  # type: ignore[override]
        # super()'s for_user builds a `cls`, which mypy types as simplejwt's class.
        token = cast("RefreshToken", super().for_user(user))
        token[VERSION_CLAIM] = user.token_version
        return token


@dataclass(frozen=True)
class Authenticated:
    """A user and the claims that proved who they are: an access token's, or those a
    WebSocket ticket carried over from one (`ver`, `exp`, the user id)."""

    user: User
    token: Claims


def token_pair_for_user(*, user: User) -> dict[str, str]:
    """Issue a fresh refresh token (recorded as outstanding) and its access token."""
    refresh = RefreshToken.for_user(user)
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


def token_parse(raw: str, token_class: type[Token] = AccessToken) -> Token:
    """Check signature, algorithm, audience, issuer, expiry and type; raise TokenRejected.

    For refresh tokens simplejwt also checks the blacklist.
    """
    if len(raw) > settings.JWT_MAX_TOKEN_BYTES:
        raise TokenRejected("token too long")
    token_header_check(raw)
    try:
        # simplejwt annotates its argument as a Token, but it takes the encoded text.
        return token_class(raw)  # type: ignore[arg-type]
    except ExpiredTokenError as e:
        raise TokenExpired("token expired") from e
    except TokenError as e:
        raise TokenRejected(str(e)) from e
    except (OverflowError, TypeError, ValueError) as e:  # absurd claims PyJWT does not catch
        raise TokenRejected("malformed claims") from e


# What our tokens' headers hold; anything else (a nested object, an unknown field) is refused
# before the signature is even checked.
TOKEN_HEADER_FIELDS = frozenset({"alg", "typ", "kid"})


def token_header_check(raw: str) -> None:
    """Refuse a token whose header is not a flat object of the fields our tokens carry."""
    try:
        header = jwt.get_unverified_header(raw)
    except (jwt.InvalidTokenError, ValueError, TypeError, RecursionError) as e:
        raise TokenRejected("malformed header") from e
    if not set(header) <= TOKEN_HEADER_FIELDS or not all(
        isinstance(value, str) for value in header.values()
    ):
        raise TokenRejected("unexpected token header")


def token_user_id(token: Claims) -> int:
    """The user id claim as an integer, or TokenRejected."""
    value = token.get(api_settings.USER_ID_CLAIM)
    # simplejwt writes the id as a string; accept that or a plain integer, nothing looser.
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 20:
        value = int(value)
    if type(value) is not int or not 0 < value < 2**63:
        raise TokenRejected("malformed user id")
    return value


def token_user_check(*, token: Claims, user: User | None) -> User:
    """Refuse unknown and inactive users and tokens issued before the last revocation."""
    if user is None:
        raise TokenRejected("unknown user")
    if not user.is_active:
        raise TokenRejected("inactive user")
    if token.get(VERSION_CLAIM) != user.token_version:
        raise TokenRejected("token revoked")
    return user


def user_for_token(raw: str) -> Authenticated:
    """Resolve a raw access token to its user (sync: REST)."""
    token = token_parse(raw)
    if access_token_revoked(token):
        raise TokenRejected("access token revoked")
    user = get_user_model().objects.filter(pk=token_user_id(token)).first()
    return Authenticated(user=token_user_check(token=token, user=user), token=token)


@database_sync_to_async
def users_by_id(user_ids: list[int]) -> dict[int, User]:
    """The users that exist among `user_ids`, by primary key, in one query (closing a
    connection a database outage broke)."""
    return get_user_model().objects.in_bulk(user_ids)


_user_batchers: dict[asyncio.AbstractEventLoop, Batcher[int, User]] = {}


async def user_by_id(user_id: int) -> User | None:
    """One user by primary key; the lookups of handshakes arriving meanwhile share one
    query (`core.db_batch`)."""
    return await loop_batcher(_user_batchers, users_by_id).call(user_id)


@database_sync_to_async
def users_token_state(user_ids: list[int]) -> dict[int, tuple[int, bool]]:
    """{user id: (token version, is active)} for the users that still exist."""
    rows = get_user_model().objects.filter(pk__in=user_ids)
    return {
        pk: (version, active)
        for pk, version, active in rows.values_list("pk", "token_version", "is_active")
    }


async def auser_for_claims(claims: Claims) -> Authenticated:
    """The user of already-verified claims (a token's, or a ticket's), checked like a
    token's; one query. A database that fails, or takes longer than AUTH_DB_TIMEOUT, raises
    AuthUnavailable."""
    if await aaccess_token_revoked(claims):
        raise TokenRejected("access token revoked")
    try:
        user = await asyncio.wait_for(
            user_by_id(token_user_id(claims)), timeout=settings.AUTH_DB_TIMEOUT
        )
    except (DatabaseError, TimeoutError) as e:
        raise AuthUnavailable(f"database unavailable ({type(e).__name__})") from e
    return Authenticated(user=token_user_check(token=claims, user=user), token=claims)


async def auser_for_token(raw: str) -> Authenticated:
    """Resolve a raw access token to its user (async: WebSocket); one query."""
    return await auser_for_claims(token_parse(raw))
