"""Account actions with side effects: revoking a user's tokens (the apps holding sessions are
told through `accounts.revocation_signals`), registering, refreshing."""

import logging
import time
from datetime import datetime
from typing import cast

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts.models import User, user_identity_conflicts
from accounts.revocation_signals import access_token_revoked, tokens_revoked
from accounts.tokens import (
    AuthUnavailable,
    Claims,
    RefreshToken,
    TokenRejected,
    revoked_jti_key,
    token_pair_for_user,
    token_parse,
    token_user_check,
    token_user_id,
    user_for_token,
)

security_log = logging.getLogger("switchboard.security")


def user_blacklist_refresh_tokens(*, user: User) -> int:
    """Blacklist every unexpired refresh token of the user; return how many were added."""
    outstanding = OutstandingToken.objects.filter(
        user=user, expires_at__gt=timezone.now(), blacklistedtoken__isnull=True
    )
    created = BlacklistedToken.objects.bulk_create(
        [BlacklistedToken(token=token) for token in outstanding], ignore_conflicts=True
    )
    return len(created)


def user_revoke_tokens(*, user: User, reason: str) -> None:
    """Refuse every token issued to the user so far and close their sessions on every worker."""
    with transaction.atomic():
        now = timezone.now()
        User.objects.filter(pk=user.pk).update(
            token_version=F("token_version") + 1, tokens_revoked_at=now
        )
        user.refresh_from_db(fields=["token_version", "tokens_revoked_at"])
        user_blacklist_refresh_tokens(user=user)
        tokens_revoked.send(sender=User, user_id=user.pk, revoked_below=user.token_version)
    security_log.warning("tokens revoked: user_id=%s reason=%s", user.pk, reason)


def access_token_revoke(*, token: Claims, user_id: int) -> None:
    """Refuse one access token from now on, on REST and WebSocket (its `jti` stays in the
    shared cache until the token would have expired), and close the sessions using it.
    AuthUnavailable when the cache cannot record it: nothing is revoked then, and the caller
    must not report a logout that did not happen."""
    ttl = max(1, int(token["exp"] - time.time()) + 1)
    try:
        cache.set(revoked_jti_key(token["jti"]), 1, timeout=ttl)
    except Exception as e:
        security_log.error(
            "access token not recorded as revoked (cache unreachable: %s): user_id=%s; "
            "logout answered unavailable",
            type(e).__name__,
            user_id,
        )
        raise AuthUnavailable(f"revoked-token list unwritable ({type(e).__name__})") from e
    access_token_revoked.send(sender=User, user_id=user_id, jti=token["jti"])
    security_log.warning("access token revoked (logout): user_id=%s", user_id)


class IdentityTaken(Exception):
    """The username or the email (normalised) belongs to another account: `fields` says which."""

    def __init__(self, fields: list[str]):
        super().__init__(f"taken: {', '.join(fields)}")
        self.fields = fields


def _constraint_fields(error: IntegrityError) -> list[str]:
    """The identity fields an IntegrityError's unique constraint guards (PostgreSQL names
    the constraint; SQLite lists the columns after "UNIQUE constraint failed: ")."""
    diag = getattr(error.__cause__, "diag", None)
    name = getattr(diag, "constraint_name", None) or str(error).partition("failed: ")[2]
    return [field for field in ("username", "email") if field in name]


def refresh_tokens_flush(*, expired_before: datetime, batch: int = 1000) -> int:
    """Delete the refresh-token records (outstanding, and blacklisted with them) that expired
    before `expired_before`; how many outstanding ones. simplejwt's `flushexpiredtokens`, in
    batches: one delete of every row would load them all into memory first (the cascade)."""
    expired = OutstandingToken.objects.filter(expires_at__lt=expired_before).order_by("pk")
    deleted = 0
    while pks := list(expired.values_list("pk", flat=True)[:batch]):
        with transaction.atomic():
            BlacklistedToken.objects.filter(token_id__in=pks).delete()
            deleted += OutstandingToken.objects.filter(pk__in=pks).delete()[0]
    return deleted


def user_register(*, username: str, email: str, password: str) -> User:
    """Create an active user; IdentityTaken when the username or email, normalised, is
    another account's (a racing registration that took it first included)."""
    try:
        with transaction.atomic():
            return User.objects.create_user(username=username, email=email, password=password)
    except IntegrityError as e:
        taken = user_identity_conflicts(username=username, email=email) or _constraint_fields(e)
        if not taken:
            raise
        raise IdentityTaken(taken) from e


def refresh_token_check(raw: str) -> tuple[RefreshToken, User]:
    """A refresh token's user, after the same user rules as access tokens, or TokenRejected."""
    refresh = cast(RefreshToken, token_parse(raw, RefreshToken))  # a token_class instance
    user = User.objects.filter(pk=token_user_id(refresh)).first()
    return refresh, token_user_check(token=refresh, user=user)


def refresh_token_blacklist(refresh: RefreshToken) -> bool:
    """Blacklist a refresh token; False when it already was (a concurrent use won)."""
    # simplejwt annotates blacklist() as the row; it returns get_or_create's (row, created).
    _, created = cast("tuple[BlacklistedToken, bool]", refresh.blacklist())
    return created


def refresh_token_rotate(*, raw: str) -> dict[str, str]:
    """Spend a refresh token: blacklist it and issue a new pair. Exactly one racer wins."""
    with transaction.atomic():
        refresh, user = refresh_token_check(raw)
        if not refresh_token_blacklist(refresh):
            raise TokenRejected("Token is blacklisted")
        return token_pair_for_user(user=user)


def token_verify(raw: str) -> None:
    """Accept a usable access or refresh token; raise the access check's TokenRejected otherwise
    (AuthUnavailable when the revoked-token list cannot be read)."""
    try:
        user_for_token(raw)
    except AuthUnavailable:  # cannot tell whether it was revoked: the caller answers 503
        raise
    except TokenRejected as access_error:
        try:
            refresh_token_check(raw)
        except TokenRejected:
            raise access_error from None
