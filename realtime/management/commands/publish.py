"""`python manage.py publish CHANNEL JSON`: publish to a room from shell scripts and cron."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from realtime.events import PublishUnavailable, publish
from realtime.rooms.policy import channel_name_valid


class Command(BaseCommand):
    help = "Publish JSON data to a room on every worker (subscribers see from: null)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("channel", help="room name: 1-80 characters of A-Z a-z 0-9 _ . -")
        parser.add_argument("data", help='any JSON value, e.g. \'{"text": "hello"}\'')

    def handle(self, *args: Any, channel: str, data: str, **options: Any) -> None:
        if not channel_name_valid(channel):
            raise CommandError("channel names are 1-80 characters of A-Z a-z 0-9 _ . -")
        try:
            value = json.loads(data)
        except json.JSONDecodeError as e:
            raise CommandError(f"data is not valid JSON: {e}") from e
        try:
            offset = publish(channel, value)
        except PublishUnavailable as e:
            raise CommandError(f"not published: {e}; try again later") from e
        where = "" if offset is None else f" at offset {offset}"
        self.stdout.write(f"published to {channel}{where}")
