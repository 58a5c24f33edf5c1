"""What realtime does when accounts revokes credentials (`accounts.revocation_signals`):
close the sessions they opened, on every worker, once the revoking transaction commits.

Connected by `RealtimeConfig.ready()`; accounts imports nothing of realtime.
"""

from typing import Any

from django.dispatch import receiver

from accounts.revocation_signals import access_token_revoked, tokens_revoked
from realtime.events import user_sessions_revoke_on_commit, user_sessions_revoke_token_on_commit


@receiver(tokens_revoked, dispatch_uid="realtime.sessions_close_revoked")
def sessions_close_revoked(sender: Any, *, user_id: int, revoked_below: int, **kwargs: Any) -> None:
    """Close the user's sessions whose token version is below `revoked_below` (after commit)."""
    user_sessions_revoke_on_commit(user_id=user_id, revoked_below=revoked_below)


@receiver(access_token_revoked, dispatch_uid="realtime.sessions_close_token_revoked")
def sessions_close_token_revoked(sender: Any, *, user_id: int, jti: str, **kwargs: Any) -> None:
    """Close the user's sessions opened or refreshed with the access token `jti` (after commit)."""
    user_sessions_revoke_token_on_commit(user_id=user_id, jti=jti)
