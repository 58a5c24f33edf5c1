"""Revoke a user's tokens when their password changes, they are deactivated or deleted.

These receivers catch every path (admin forms, shell, management commands); the work
itself is `accounts.services`. Other apps hear of it through `accounts.revocation_signals`
(realtime closes the sockets, only after the transaction commits).
"""

from typing import Any

from django.contrib.auth.hashers import check_password
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from accounts.models import User
from accounts.revocation_signals import REVOKED_ALL, tokens_revoked
from accounts.services import user_revoke_tokens

_WATCHED = {"password", "is_active"}


def _revocation_reason(user: User, update_fields: frozenset[str] | None) -> str | None:
    """Why saving `user` must revoke their tokens, or None."""
    if user._state.adding or (update_fields is not None and not _WATCHED & update_fields):
        return None
    stored = User.objects.filter(pk=user.pk).values("password", "is_active").first()
    if stored is None:
        return None
    if stored["is_active"] and not user.is_active:
        return "user deactivated"
    if stored["password"] != user.password and not user._password_check:
        # A hash upgrade at login re-saves the same password: that must not log anyone out.
        raw = getattr(user, "_password", None)
        if raw is None or not check_password(raw, stored["password"]):
            return "password changed"
    return None


@receiver(pre_save, sender=User)
def user_pre_save(
    sender: type[User],
    instance: User,
    update_fields: frozenset[str] | None = None,
    **kwargs: Any,
) -> None:
    instance._revocation_reason = _revocation_reason(instance, update_fields)


@receiver(post_save, sender=User)
def user_post_save(sender: type[User], instance: User, created: bool, **kwargs: Any) -> None:
    reason = getattr(instance, "_revocation_reason", None)
    instance._revocation_reason = None
    if reason:
        user_revoke_tokens(user=instance, reason=reason)


@receiver(post_delete, sender=User)
def user_post_delete(sender: type[User], instance: User, **kwargs: Any) -> None:
    tokens_revoked.send(sender=User, user_id=instance.pk, revoked_below=REVOKED_ALL)
