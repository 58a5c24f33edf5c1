"""Request bodies of the realtime REST API."""

from rest_framework import serializers

from realtime.rooms import channel_name_valid


class PublishSerializer(serializers.Serializer):
    channel = serializers.CharField(max_length=80, trim_whitespace=False)
    data = serializers.JSONField(allow_null=True, help_text="Any JSON value.")

    def validate_channel(self, value: str) -> str:
        if not channel_name_valid(value):
            raise serializers.ValidationError(
                "Channel names are 1-80 characters of A-Z a-z 0-9 _ . -"
            )
        return value


class PublishedSerializer(serializers.Serializer):
    channel = serializers.CharField()
