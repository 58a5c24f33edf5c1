"""The user model: Django's user plus the state that revokes tokens and the normalised
identity keys that keep usernames and emails unique."""

from collections.abc import Collection
from typing import Any

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models

from accounts.identity import TAKEN, email_key, username_key


class User(AbstractUser):
    """A Switchboard user. `token_version` is stamped into every token issued to the user.

    Revoking bumps the version, so every token issued before is refused and every token
    issued after is accepted, even within the same second (a whole-second `iat` cannot
    tell those apart).
    """

    email = models.EmailField("email address")
    token_version = models.PositiveIntegerField(
        default=0, editable=False, help_text="Tokens carrying another version are refused."
    )
    tokens_revoked_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the user's tokens were last revoked."
    )
    # Written by save() from `username` and `email` (accounts/identity.py), unique in the
    # database. A QuerySet.update() of username or email leaves them stale: save instead.
    username_key = models.TextField(
        editable=False, help_text="The username NFKC-normalised and case-folded (unique)."
    )
    email_key = models.TextField(
        editable=False, help_text="The email normalised like the username (unique)."
    )

    # True while Django checks a password: the only save then is a hash upgrade of the
    # same password, which must not revoke tokens (Django clears `_password` for it).
    _password_check = False
    # Set by the pre_save receiver for post_save (accounts/signals.py); annotated only.
    _revocation_reason: str | None

    def check_password(self, raw_password: str | None) -> bool:
        """Django's check; a hash upgrade it saves is marked as not a password change."""
        self._password_check = True
        try:
            return super().check_password(raw_password)
        finally:
            self._password_check = False

    async def acheck_password(self, raw_password: str | None) -> bool:
        """See check_password()."""
        self._password_check = True
        try:
            return await super().acheck_password(raw_password)
        finally:
            self._password_check = False

    # Written only by `accounts.services.user_revoke_tokens` (an atomic F() update): a save of
    # a stale copy (an admin form opened before a revocation) must not write an old version
    # back and bring revoked tokens to life.
    REVOCATION_FIELDS = frozenset({"token_version", "tokens_revoked_at"})
    IDENTITY_KEYS = {"username": "username_key", "email": "email_key"}

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.username_key = username_key(self.username)
        self.email_key = email_key(self.email)
        update_fields = kwargs.get("update_fields")
        if not self._state.adding and update_fields is None:
            kwargs["update_fields"] = [
                f.name
                for f in self._meta.concrete_fields
                if not f.primary_key and f.name not in self.REVOCATION_FIELDS
            ]
        elif update_fields is not None:
            keys = [key for field, key in self.IDENTITY_KEYS.items() if field in update_fields]
            kwargs["update_fields"] = [*update_fields, *keys]
        super().save(*args, **kwargs)

    def validate_unique(self, exclude: Collection[str] | None = None) -> None:
        """Django's checks, plus the normalised username and email: model forms (the admin's
        add and change pages) refuse a taken one with a field error. (Django skips the key
        constraints themselves: the keys are not form fields.)"""
        errors: dict[str, list[ValidationError]] = {}
        try:
            super().validate_unique(exclude=exclude)
        except ValidationError as e:
            errors = e.update_error_dict(errors)
        values = {"username": self.username, "email": self.email}
        checked = {field: value for field, value in values.items() if field not in (exclude or ())}
        for field in user_identity_conflicts(**checked, exclude_pk=self.pk):
            if field not in errors:  # an exact duplicate: Django said it already
                errors[field] = [ValidationError(TAKEN[field], code="unique")]
        if errors:
            raise ValidationError(errors)

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
        constraints = [
            models.UniqueConstraint(fields=["username_key"], name="accounts_user_username_key_uq"),
            models.UniqueConstraint(fields=["email_key"], name="accounts_user_email_key_uq"),
        ]


def user_identity_conflicts(
    *, username: str | None = None, email: str | None = None, exclude_pk: int | None = None
) -> list[str]:
    """Which of `username` and `email` another account (not `exclude_pk`) already has, once
    normalised: ["username"], ["email"], both or none."""
    lookups = {}
    if username is not None:
        lookups["username"] = {"username_key": username_key(username)}
    if email is not None:
        lookups["email"] = {"email_key": email_key(email)}
    others = User._default_manager.all()
    if exclude_pk is not None:
        others = others.exclude(pk=exclude_pk)
    return [field for field, lookup in lookups.items() if others.filter(**lookup).exists()]
