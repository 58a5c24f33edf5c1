"""DRF authentication through the same token rules the WebSocket uses."""

from typing import cast

from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed
from rest_framework_simplejwt.tokens import Token

from accounts.exceptions import ServiceUnavailable
from accounts.models import User
from accounts.tokens import AuthUnavailable, TokenRejected, user_for_token


class TokenUnusable(AuthenticationFailed):
    """401 for a token that cannot be used; `code` is `unauthorized` or `token_expired`."""

    def __init__(self, error: TokenRejected) -> None:
        expired = error.code == "token_expired"
        super().__init__("Token expired" if expired else "Token is invalid", code=error.code)


class VersionedJWTAuthentication(JWTAuthentication):
    """`Authorization: Bearer <access>`, checked by `accounts.tokens.user_for_token`."""

    # simplejwt's return type holds a TypeVar bound by no argument: nothing concrete matches.
    def authenticate(self, request: Request) -> tuple[User, Token] | None:  # type: ignore[override]
        header = self.get_header(request)
        if header is None:
            return None
        raw = self.get_raw_token(header)
        if raw is None:
            return None
        try:
            auth = user_for_token(raw.decode("latin-1"))
        except AuthUnavailable as e:  # cannot tell whether it was revoked: never accept it
            raise ServiceUnavailable from e
        except TokenRejected as e:
            raise TokenUnusable(e) from e
        # user_for_token proves a user with a parsed access token (not a ticket's claims).
        return auth.user, cast(Token, auth.token)
