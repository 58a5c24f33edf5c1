"""The realtime REST API: server-side publishing for staff, and the live sessions."""

import logging
import uuid
from typing import Any, cast

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from limits import RateLimitItemPerMinute
from rest_framework import status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from accounts.exceptions import ServiceUnavailable
from accounts.models import User
from accounts.schema import BAD_REQUEST, UNAUTHORIZED, UNAVAILABLE, error
from accounts.tokens import AccessToken, Authenticated
from core.client_ip import request_client_ip
from realtime.auth.tickets import TICKET_TTL, ticket_issue
from realtime.cluster.workers import alive_workers_sync
from realtime.events import PublishUnavailable, publish
from realtime.hub import hub
from realtime.registry.services import sessions_disconnect, sessions_online
from realtime.serializers import (
    PublishedSerializer,
    PublishSerializer,
    SessionSerializer,
    TicketSerializer,
)

logger = logging.getLogger("switchboard.realtime")


class PublishView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(
        summary="Publish to a room on every worker (staff only); subscribers get `from: null`",
        request=PublishSerializer,
        responses={
            503: UNAVAILABLE,
            202: PublishedSerializer,
            400: BAD_REQUEST,
            401: UNAUTHORIZED,
            403: error("Not a staff user."),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = PublishSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        channel = serializer.validated_data["channel"]
        try:
            offset = publish(channel, serializer.validated_data["data"])
        except PublishUnavailable as e:
            logger.warning(
                "publish by staff user %s to %s refused: %s", request.user.pk, channel, e
            )
            raise ServiceUnavailable from e
        logger.info("published by staff user %s to %s", request.user.pk, channel)
        body = {"channel": channel} if offset is None else {"channel": channel, "offset": offset}
        return Response(body, status=status.HTTP_202_ACCEPTED)


ALL_PARAMETER = OpenApiParameter(
    "all", bool, description="Staff only: `1` lists every user's online sessions."
)


def may_see_every_session(user: Any) -> bool:
    """Staff with the permission to view sessions (superusers have it)."""
    return bool(user.is_staff and user.has_perm("realtime.view_websocketsession"))


def may_disconnect_any_session(user: Any) -> bool:
    """Staff who may change users: the admin's disconnect actions ask the same."""
    return bool(user.is_staff and user.has_perm("accounts.change_user"))


def alive_workers_or_unavailable() -> set[str]:
    """The alive workers; a 503 (`unavailable`) when Redis cannot say."""
    try:
        return alive_workers_sync()
    except Exception as e:
        logger.warning("alive workers unknown (%s): sessions API unavailable", type(e).__name__)
        raise ServiceUnavailable from e


class SessionListView(APIView):
    @extend_schema(
        summary="The caller's online WebSocket sessions (staff: `?all=1`, everyone's)",
        parameters=[ALL_PARAMETER],
        responses={
            503: UNAVAILABLE,
            200: SessionSerializer(many=True),
            401: UNAUTHORIZED,
            403: error("`all=1` from a user without the permission to view sessions."),
        },
    )
    def get(self, request: Request) -> Response:
        everyone = request.query_params.get("all") in ("1", "true")
        if everyone and not may_see_every_session(request.user):
            raise PermissionDenied(
                "Only staff with the permission to view sessions may list every user's sessions."
            )
        sessions = sessions_online(alive_workers_or_unavailable()).order_by("connected_at")
        if not everyone:
            sessions = sessions.filter(user_id=cast(int, request.user.pk))
        return Response(SessionSerializer(sessions, many=True).data)


class SessionDetailView(APIView):
    @extend_schema(
        summary="Disconnect one online session (close 4501); staff who may change users may "
        "disconnect anyone's",
        responses={
            503: UNAVAILABLE,
            204: None,
            401: UNAUTHORIZED,
            404: error("No such online session of the caller's (operators: of anyone's)."),
        },
    )
    def delete(self, request: Request, session_id: uuid.UUID) -> Response:
        sessions = sessions_online(alive_workers_or_unavailable()).filter(pk=session_id)
        if not may_disconnect_any_session(request.user):
            sessions = sessions.filter(user_id=cast(int, request.user.pk))
        session = sessions.first()
        if session is None:
            raise NotFound("No such online session.")
        sessions_disconnect(sessions=[session], by=f"user {request.user.pk} over REST")
        return Response(status=status.HTTP_204_NO_CONTENT)


class TicketThrottle(BaseThrottle):
    """WS_TICKETS_PER_MINUTE per client IP, counted atomically across every worker
    (`core.rate_limits`: one Redis script per request); when Redis cannot answer, per
    worker."""

    def allow_request(self, request: Request, view: Any) -> bool:
        item = RateLimitItemPerMinute(settings.WS_TICKETS_PER_MINUTE)
        self.ids = ("ws-tickets", request_client_ip(request))
        self.item = item
        return hub().ticket_rate.hit(item, *self.ids)

    def wait(self) -> float | None:
        return max(1.0, hub().ticket_rate.reset_in(self.item, *self.ids))


class TicketView(APIView):
    throttle_classes = [TicketThrottle]

    @extend_schema(
        summary="A single-use, 30-second ticket for `/ws/session/?ticket=…` (keeps the access "
        "token out of URLs)",
        request=None,
        responses={
            503: UNAVAILABLE,
            201: TicketSerializer,
            401: UNAUTHORIZED,
            429: error("Too many tickets asked for from this address (`throttled`)."),
        },
    )
    def post(self, request: Request) -> Response:
        # IsAuthenticated has run: the user is a User, the token simplejwt's AccessToken.
        auth = Authenticated(user=cast(User, request.user), token=cast(AccessToken, request.auth))
        try:
            ticket = ticket_issue(
                store=hub().tickets, auth=auth, client_ip=request_client_ip(request)
            )
        except Exception as e:
            logger.warning("ticket not stored (%s)", type(e).__name__)
            raise ServiceUnavailable from e
        return Response(
            {"ticket": ticket, "expires_in": TICKET_TTL}, status=status.HTTP_201_CREATED
        )
