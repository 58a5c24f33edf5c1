"""The realtime REST API: server-side publishing for staff."""

import logging

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.schema import BAD_REQUEST, UNAUTHORIZED, UNAVAILABLE, error
from realtime.events import publish
from realtime.serializers import PublishedSerializer, PublishSerializer

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
        publish(channel, serializer.validated_data["data"])
        logger.info("published by staff user %s to %s", request.user.pk, channel)
        return Response({"channel": channel}, status=status.HTTP_202_ACCEPTED)
