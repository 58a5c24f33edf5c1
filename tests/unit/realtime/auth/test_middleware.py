"""realtime.auth.middleware: `?token=` → `scope["user"]`, `scope["auth"]`, `scope["auth_error"]`."""

from urllib.parse import quote

import pytest
from django.contrib.auth.models import AnonymousUser

from accounts.tokens import TokenExpired, TokenRejected
from realtime.auth.middleware import (
    CredentialsMissing,
    JWTAuthMiddleware,
    JWTAuthMiddlewareStack,
    token_from_query,
)
from tests.conftest import access_for
from tests.unit.token_cases import BAD_TOKENS


def scope_with(query: bytes) -> dict:
    return {"type": "websocket", "path": "/ws/session/", "query_string": query}


# -- token_from_query ---------------------------------------------------------------------


@pytest.mark.parametrize("query", [b"", b"other=1", b"token=", b"tokens=abc", b"Token=abc"])
def test_no_token_parameter_means_none(query):
    assert token_from_query(scope_with(query)) is None


def test_a_scope_without_a_query_string_means_none():
    assert token_from_query({"type": "websocket"}) is None


def test_the_token_parameter_is_returned_among_others():
    assert token_from_query(scope_with(b"a=1&token=abc.def.ghi&b=2")) == "abc.def.ghi"


def test_a_percent_encoded_token_is_decoded():
    raw = "abc+/=def"

    assert token_from_query(scope_with(f"token={quote(raw, safe='')}".encode())) == raw


def test_two_tokens_are_refused():
    with pytest.raises(TokenRejected) as refused:
        token_from_query(scope_with(b"token=a&token=b"))

    assert (refused.value.code, refused.value.reason) == ("unauthorized", "more than one token")


def test_a_query_with_too_many_fields_is_refused():
    query = "&".join(f"f{i}=1" for i in range(40)).encode()

    with pytest.raises(TokenRejected) as refused:
        token_from_query(scope_with(query + b"&token=abc"))

    assert refused.value.reason == "malformed query string"


# -- the middleware -----------------------------------------------------------------------


class ScopeRecorder:
    """An inner ASGI app that keeps the scope it was called with."""

    def __init__(self) -> None:
        self.scope: dict | None = None

    async def __call__(self, scope, receive, send):
        self.scope = scope


@pytest.mark.django_db(transaction=True)
async def test_a_valid_token_fills_user_and_auth(user):
    token = access_for(user)
    inner = ScopeRecorder()
    original = scope_with(f"token={token}".encode())

    await JWTAuthMiddlewareStack(inner)(original, None, None)

    assert inner.scope["user"] == user
    assert inner.scope["auth"].user == user
    assert inner.scope["auth"].token["jti"] == token["jti"]
    assert inner.scope["auth_error"] is None
    assert "user" not in original  # the caller's scope is copied, not changed


@pytest.mark.django_db(transaction=True)
async def test_a_missing_token_leaves_an_anonymous_user_and_the_reason():
    inner = ScopeRecorder()

    await JWTAuthMiddleware(inner)(scope_with(b""), None, None)

    assert isinstance(inner.scope["user"], AnonymousUser)
    assert inner.scope["auth"] is None
    error = inner.scope["auth_error"]
    assert (type(error), error.code, error.reason) == (
        CredentialsMissing,
        "unauthorized",
        "no credentials",
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("case", BAD_TOKENS, ids=[case.id for case in BAD_TOKENS])
async def test_a_bad_token_leaves_an_anonymous_user_and_the_reason(case, user, bad_token_raw):
    inner = ScopeRecorder()

    await JWTAuthMiddleware(inner)(scope_with(f"token={bad_token_raw}".encode()), None, None)

    assert isinstance(inner.scope["user"], AnonymousUser)
    assert inner.scope["auth"] is None
    error = inner.scope["auth_error"]
    assert type(error) is (TokenExpired if case.code == "token_expired" else TokenRejected)
    assert (error.code, error.reason) == (case.code, case.reason)


@pytest.fixture
def bad_token_raw(case, user) -> str:
    return case.build(user)


async def test_a_non_websocket_scope_passes_through_untouched():
    inner = ScopeRecorder()
    scope = {"type": "http", "path": "/", "query_string": b"token=abc"}

    await JWTAuthMiddleware(inner)(scope, None, None)

    assert inner.scope is scope
