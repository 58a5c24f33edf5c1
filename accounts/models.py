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

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
        constraints = [
            models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_unique"),
        ]
