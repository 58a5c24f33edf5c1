"""Request bodies of the realtime REST API."""

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from realtime.models import WebSocketSession
from realtime.rooms.policy import channel_name_valid


class PublishSerializer(serializers.Serializer[Any]):
    channel = serializers.CharField(max_length=80, trim_whitespace=False)
    # The body's field is named `data`, which shadows the serializer's own `.data` (unused here).
    data = serializers.JSONField(allow_null=True, help_text="Any JSON value.")  # type: ignore[assignment]

    def validate_channel(self, value: str) -> str:
        if not channel_name_valid(value):
            raise serializers.ValidationError(
                "Channel names are 1-80 characters of A-Z a-z 0-9 _ . -"
            )
        return value


class PublishedSerializer(serializers.Serializer[Any]):
    channel = serializers.CharField()
    offset = serializers.IntegerField(
        required=False, help_text="In a room with history: the offset the publication got."
    )


class SessionUserSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    username = serializers.CharField()


class SessionSerializer(serializers.ModelSerializer[WebSocketSession]):
    """An online session, as `GET /api/realtime/sessions/` lists it."""

    user = serializers.SerializerMethodField()

    class Meta:
        model = WebSocketSession
        fields = ["id", "user", "client_ip", "user_agent", "worker", "connected_at"]

    @extend_schema_field(SessionUserSerializer(allow_null=True))
    def get_user(self, session: WebSocketSession) -> dict[str, Any] | None:
        if session.user_id is None:
            return None
        return {"id": session.user_id, "username": session.username}


class TicketSerializer(serializers.Serializer[Any]):
    ticket = serializers.CharField(help_text="Pass as `/ws/session/?ticket=…`; works once.")
    expires_in = serializers.IntegerField(help_text="Seconds the ticket stays valid (30).")
