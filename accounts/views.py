"""The JSON auth API: views parse, call `accounts.services`, and serialize."""

from typing import Any, cast

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services
from accounts.authentication import TokenUnusable, VersionedJWTAuthentication
from accounts.exceptions import ServiceUnavailable
from accounts.identity import TAKEN
from accounts.login import TooManyLoginFailures, login_authenticate
from accounts.models import User
from accounts.schema import BAD_REQUEST, UNAUTHORIZED, UNAVAILABLE, error
from accounts.serializers import (
    LoginSerializer,
    MeSerializer,
    RefreshSerializer,
    RegisterSerializer,
    TokenPairSerializer,
    UserSerializer,
    VerifySerializer,
)
from accounts.tokens import AccessToken, AuthUnavailable, TokenRejected, token_pair_for_user


class LoginThrottled(exceptions.Throttled):
    default_detail = "Too many failed logins; try again later."
    default_code = "login_throttled"


class PublicAPIView(APIView):
    """An endpoint without authentication whose refused credentials still answer 401."""

    def get_authenticate_header(self, request: Request) -> str:
        # DRF turns 401 into 403 when a view has no authenticator to name a scheme.
        return VersionedJWTAuthentication().authenticate_header(request)


def body(serializer_class: type[serializers.Serializer[Any]], request: Request) -> dict[str, Any]:
    """The request body validated by `serializer_class` (400 with per-field errors)."""
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    data: dict[str, Any] = serializer.validated_data
    return data


def caller(request: Request) -> User:
    """The authenticated user of a view that requires one (DRF's default IsAuthenticated)."""
    return cast(User, request.user)


class RegisterView(PublicAPIView):
    permission_classes = [AllowAny]
    authentication_classes: list[type[BaseAuthentication]] = []

    @extend_schema(
        summary="Create an account",
        request=RegisterSerializer,
        responses={
            503: UNAVAILABLE,
            201: UserSerializer,
            400: BAD_REQUEST,
            403: error("Registration is turned off (`registration_disabled`)."),
        },
    )
    def post(self, request: Request) -> Response:
        if not settings.ACCOUNTS_ALLOW_REGISTRATION:
            raise exceptions.PermissionDenied(
                "Registration is disabled.", code="registration_disabled"
            )
        data = body(RegisterSerializer, request)
        try:
            user = services.user_register(**data)
        except services.IdentityTaken as e:  # a racing registration took it: say which field
            raise serializers.ValidationError({f: [TAKEN[f]] for f in e.fields}) from e
        return Response(UserSerializer(user).data, status=status.HTTP_201_CREATED)


class TokenObtainView(PublicAPIView):
    permission_classes = [AllowAny]
    authentication_classes: list[type[BaseAuthentication]] = []

    @extend_schema(
        summary="Log in: a new access and refresh token",
        request=LoginSerializer,
        responses={
            503: UNAVAILABLE,
            200: TokenPairSerializer,
            400: BAD_REQUEST,
            401: error("Bad credentials (`bad_credentials`)."),
            429: error("Too many failed logins (`login_throttled`); see Retry-After."),
        },
    )
    def post(self, request: Request) -> Response:
        data = body(LoginSerializer, request)
        try:
            user = login_authenticate(
                request=request, username=data["username"], password=data["password"]
            )
        except TooManyLoginFailures as e:
            raise LoginThrottled(wait=e.wait) from e
        if user is None:
            raise exceptions.AuthenticationFailed(
                "No active account found with the given credentials", code="bad_credentials"
            )
        return Response(token_pair_for_user(user=user))


class TokenRefreshView(PublicAPIView):
    permission_classes = [AllowAny]
    authentication_classes: list[type[BaseAuthentication]] = []

    @extend_schema(
        summary="Spend a refresh token for a new pair (the old one is blacklisted)",
        request=RefreshSerializer,
        responses={503: UNAVAILABLE, 200: TokenPairSerializer, 400: BAD_REQUEST, 401: UNAUTHORIZED},
    )
    def post(self, request: Request) -> Response:
        data = body(RefreshSerializer, request)
        try:
            return Response(services.refresh_token_rotate(raw=data["refresh"]))
        except TokenRejected as e:
            raise TokenUnusable(e) from e


class TokenVerifyView(PublicAPIView):
    permission_classes = [AllowAny]
    authentication_classes: list[type[BaseAuthentication]] = []

    @extend_schema(
        summary="Check that an access or refresh token is usable",
        request=VerifySerializer,
        responses={
            503: UNAVAILABLE,
            200: OpenApiResponse(response={"type": "object"}, description="Usable."),
            400: BAD_REQUEST,
            401: UNAUTHORIZED,
        },
    )
    def post(self, request: Request) -> Response:
        data = body(VerifySerializer, request)
        try:
            services.token_verify(data["token"])
        except AuthUnavailable as e:
            raise ServiceUnavailable from e
        except TokenRejected as e:
            raise TokenUnusable(e) from e
        return Response({})


class LogoutView(APIView):
    @extend_schema(
        summary="Blacklist one refresh token and revoke the access token of the call (its "
        "sessions are closed with 4501)",
        request=RefreshSerializer,
        responses={
            503: UNAVAILABLE,
            204: OpenApiResponse(description="Logged out."),
            400: BAD_REQUEST,
            401: UNAUTHORIZED,
            403: error("The refresh token belongs to another user."),
        },
    )
    def post(self, request: Request) -> Response:
        data = body(RefreshSerializer, request)
        try:
            refresh, owner = services.refresh_token_check(data["refresh"])
        except TokenRejected as e:
            raise TokenUnusable(e) from e
        if owner.pk != request.user.pk:
            raise exceptions.PermissionDenied("That refresh token belongs to another user.")
        try:  # first: a logout whose access token cannot be revoked changes nothing
            # VersionedJWTAuthentication's auth is the access token (not DRF's authtoken).
            access = cast(AccessToken, request.auth)
            services.access_token_revoke(token=access, user_id=request.user.pk)
        except AuthUnavailable as e:
            raise ServiceUnavailable from e
        services.refresh_token_blacklist(refresh)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogoutAllView(APIView):
    @extend_schema(
        summary="Revoke every token of the caller and close their sessions (4501)",
        request=None,
        responses={
            503: UNAVAILABLE,
            204: OpenApiResponse(description="Revoked."),
            401: UNAUTHORIZED,
        },
    )
    def post(self, request: Request) -> Response:
        services.user_revoke_tokens(user=caller(request), reason="logout-all")
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    @extend_schema(
        summary="The caller", responses={503: UNAVAILABLE, 200: MeSerializer, 401: UNAUTHORIZED}
    )
    def get(self, request: Request) -> Response:
        return Response(MeSerializer(caller(request)).data)
