"""accounts.tokens: the one function that turns a raw access token into a user."""

import pytest

from accounts.services import user_revoke_tokens
from accounts.tokens import (
    VERSION_CLAIM,
    AccessToken,
    TokenExpired,
    TokenRejected,
    auser_for_token,
    token_pair_for_user,
    user_for_token,
)
from tests.conftest import access_for
from tests.unit.token_cases import BAD_TOKENS, BadToken


@pytest.fixture(params=BAD_TOKENS, ids=[case.id for case in BAD_TOKENS])
def bad_token(request, user) -> tuple[BadToken, str]:
    case: BadToken = request.param
    return case, case.build(user)


def assert_refused(error: TokenRejected, case: BadToken) -> None:
    assert type(error) is (TokenExpired if case.code == "token_expired" else TokenRejected)
    assert (error.code, error.reason) == (case.code, case.reason)


@pytest.mark.django_db
def test_a_bad_token_is_refused_with_its_code_and_reason(bad_token):
    case, raw = bad_token
    with pytest.raises(TokenRejected) as refused:
        user_for_token(raw)
    assert_refused(refused.value, case)


@pytest.mark.django_db(transaction=True)
async def test_a_bad_token_is_refused_the_same_way_from_async_code(bad_token):
    case, raw = bad_token
    with pytest.raises(TokenRejected) as refused:
        await auser_for_token(raw)
    assert_refused(refused.value, case)


@pytest.mark.django_db
def test_an_issued_access_token_resolves_to_its_user_and_token(user):
    raw = token_pair_for_user(user=user)["access"]

    auth = user_for_token(raw)

    assert auth.user == user
    assert auth.token.payload == AccessToken(raw).payload
    assert auth.token[VERSION_CLAIM] == user.token_version == 0


@pytest.mark.django_db(transaction=True)
async def test_an_issued_access_token_resolves_from_async_code(user):
    raw = str(access_for(user))

    auth = await auser_for_token(raw)

    assert (auth.user.pk, auth.user.username) == (user.pk, "alice")


@pytest.mark.django_db
def test_a_token_issued_after_revocation_is_accepted_even_within_the_same_second(user):
    before = access_for(user)
    user_revoke_tokens(user=user, reason="test")
    after = access_for(user)
    after.set_iat(at_time=before.current_time)  # the very same whole-second iat
    after.set_exp(from_time=before.current_time)

    assert (after["iat"], after["exp"]) == (before["iat"], before["exp"])
    with pytest.raises(TokenRejected, match="token revoked"):
        user_for_token(str(before))
    assert user_for_token(str(after)).user == user


@pytest.mark.django_db
def test_a_token_exactly_at_the_size_limit_is_still_decoded(user, settings):
    raw = str(access_for(user))
    settings.JWT_MAX_TOKEN_BYTES = len(raw)

    assert user_for_token(raw).user == user
    with pytest.raises(TokenRejected, match="token too long"):
        user_for_token(raw + "x")
