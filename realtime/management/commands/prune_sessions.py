"""`python manage.py prune_sessions`: close dead workers' sessions, delete old ones, and
delete expired refresh-token records (cron, daily)."""

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts.services import refresh_tokens_flush
from realtime.cluster.workers import alive_workers_sync, dead_workers_knowable_sync
from realtime.registry.services import sessions_prune, sessions_reap


class Command(BaseCommand):
    help = (
        "Record the sessions of dead workers as closed (1006), then delete the sessions "
        "closed more than WS_SESSION_RETENTION_DAYS days ago, then the refresh-token "
        "records (outstanding and blacklisted) that have expired. Run it daily."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help="keep closed sessions this many days (default: WS_SESSION_RETENTION_DAYS)",
        )

    def handle(self, *args: Any, days: int | None, **options: Any) -> None:
        days = settings.WS_SESSION_RETENTION_DAYS if days is None else days
        if days < 0:
            raise CommandError("--days must be 0 or more")
        try:
            alive = alive_workers_sync() if dead_workers_knowable_sync() else None
        except Exception as e:
            alive = None
            self.stderr.write(f"dead workers not reaped: Redis unreachable ({type(e).__name__})")
        else:
            if alive is None:
                self.stdout.write(
                    "dead workers not reaped: no REDIS_URL, or Redis restarted less than "
                    f"{2 * settings.WS_PRESENCE_TTL} s ago"
                )
        if alive is not None:
            reaped = sessions_reap(alive_workers=alive)
            self.stdout.write(f"{reaped} session(s) of dead workers recorded closed (1006)")
        deleted = sessions_prune(closed_before=timezone.now() - timedelta(days=days))
        self.stdout.write(f"{deleted} session(s) closed more than {days} day(s) ago deleted")
        # Every refresh adds two rows (the new token, the old one blacklisted); an expired
        # token is refused by its `exp` alone, so its rows serve nothing any more.
        flushed = refresh_tokens_flush(expired_before=timezone.now())
        self.stdout.write(f"{flushed} expired refresh token(s) deleted")
