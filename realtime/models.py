"""The session registry: one row per accepted `/ws/session/` connection, the audit trail."""

import uuid
from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import BooleanField, Case, Q, Value, When


class WebSocketSessionQuerySet(models.QuerySet["WebSocketSession"]):
    def open(self) -> "WebSocketSessionQuerySet":
        """Sessions not recorded as closed (their worker may have died since)."""
        return self.filter(closed_at__isnull=True)

    def online(self, alive_workers: set[str]) -> "WebSocketSessionQuerySet":
        """Sessions open on a worker whose heartbeat is alive: really connected now."""
        return self.filter(closed_at__isnull=True, worker__in=sorted(alive_workers))

    def counted_for_cap(
        self, alive_workers: set[str], *, since: "datetime"
    ) -> "WebSocketSessionQuerySet":
        """Sessions the per-user cap counts: open on a worker known alive, or opened since
        `since` (when the alive workers were read) on any worker. A worker whose first
        heartbeat came after that read is missing from `alive_workers`, but every row it
        writes is younger than that heartbeat, so it still counts."""
        return self.filter(
            Q(worker__in=sorted(alive_workers)) | Q(connected_at__gte=since),
            closed_at__isnull=True,
        )

    def with_online(self, alive_workers: set[str]) -> "WebSocketSessionQuerySet":
        """Annotate each session with `is_online`."""
        annotated: WebSocketSessionQuerySet = self.annotate(
            is_online=Case(
                When(Q(closed_at__isnull=True, worker__in=sorted(alive_workers)), then=True),
                default=Value(False),
                output_field=BooleanField(),
            )
        )
        return annotated


class WebSocketSession(models.Model):
    """An accepted `/ws/session/` connection: who, from where, on which worker, how it ended."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,  # the audit trail outlives the account
        null=True,
        related_name="websocket_sessions",
    )
    username = models.CharField(max_length=150, help_text="The username when it connected.")
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    worker = models.CharField(max_length=200, db_index=True)
    channel_name = models.CharField(
        max_length=200, help_text="The worker's channel-layer address of this connection."
    )
    connected_at = models.DateTimeField(db_index=True)
    closed_at = models.DateTimeField(null=True, blank=True, db_index=True)
    close_code = models.PositiveIntegerField(null=True, blank=True)

    objects = WebSocketSessionQuerySet.as_manager()

    class Meta:
        verbose_name = "WebSocket session"
        ordering = ["-connected_at"]
        indexes = [models.Index(fields=["user", "closed_at"], name="wss_user_open")]

    def __str__(self) -> str:
        return f"{self.username} {self.id}"
