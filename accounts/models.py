"""The user model: Django's user plus the state that revokes tokens."""

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models.functions import Lower


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

    # True while Django checks a password: the only save then is a hash upgrade of the
    # same password, which must not revoke tokens (Django clears `_password` for it).
    _password_check = False

    def check_password(self, raw_password: str) -> bool:
        """Django's check; a hash upgrade it saves is marked as not a password change."""
        self._password_check = True
        try:
            return super().check_password(raw_password)
        finally:
            self._password_check = False

    async def acheck_password(self, raw_password: str) -> bool:
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

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding and kwargs.get("update_fields") is None:
            kwargs["update_fields"] = [
                f.name
                for f in self._meta.concrete_fields
                if not f.primary_key and f.name not in self.REVOCATION_FIELDS
            ]
        super().save(*args, **kwargs)

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
        constraints = [
            models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_unique"),
        ]
