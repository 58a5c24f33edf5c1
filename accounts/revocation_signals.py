"""What accounts tells the apps above it when credentials are revoked: Django signals, so
that accounts imports none of them (realtime connects its receivers in its ready()).

Each is sent inside the transaction that revokes, and synchronously: a receiver that acts
outside the database waits for the commit itself (`transaction.on_commit`), and one that
raises fails the revocation's caller, as a direct call would.
"""

from django.dispatch import Signal

# A deleted user's floor: no token version reaches it.
REVOKED_ALL = 2**62

# Every token of a user whose version is below `revoked_below` is refused from now on:
# sent with `user_id: int` and `revoked_below: int` (REVOKED_ALL once the user is deleted).
tokens_revoked = Signal()

# One access token (`jti: str`) of user `user_id: int` is refused from now on (a logout).
access_token_revoked = Signal()
