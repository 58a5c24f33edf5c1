"""The session registry in the Django admin: who is connected, from where, and a way to cut them;
on a user's page (accounts' user admin, extended here), their recent sessions and a disconnect.

Read-only: rows are written by the workers. "Online" is computed per request from the
workers' heartbeats (`realtime.cluster.workers`), so a killed worker's sessions show offline.
"""

from typing import TYPE_CHECKING, Any, cast

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from accounts.admin import UserAdmin as AccountsUserAdmin
from accounts.models import User
from realtime.cluster.workers import alive_workers_sync
from realtime.models import WebSocketSession, WebSocketSessionQuerySet
from realtime.registry.services import sessions_disconnect, user_sessions_disconnect

INLINE_RECENT = 20  # sessions shown on a user's admin page
ALIVE_ATTRIBUTE = "_switchboard_alive_workers"  # the request's answer, asked once

if TYPE_CHECKING:  # django-stubs' generics; Django's admin classes take no parameters at run time
    from django.contrib.admin.options import BaseModelAdmin, InlineModelAdmin

    SessionAdminBase = BaseModelAdmin[WebSocketSession]
    SessionModelAdmin = admin.ModelAdmin[WebSocketSession]
    SessionTabularInline = admin.TabularInline[WebSocketSession, WebSocketSession]
else:
    SessionAdminBase = object
    SessionModelAdmin = admin.ModelAdmin
    SessionTabularInline = admin.TabularInline


def alive_workers_for(request: HttpRequest) -> set[str]:
    """The alive workers, asked once per admin request. With Redis down, none: every session
    shows offline and the page says why, but the admin keeps working (an operator may need
    to deactivate a user right then)."""
    known: set[str] | None = getattr(request, ALIVE_ATTRIBUTE, None)
    if known is None:
        try:
            known = alive_workers_sync()
        except Exception as e:
            known = set()
            messages.warning(
                request,
                f"Redis is unreachable ({type(e).__name__}): which sessions are online is "
                "unknown, and every session shows offline.",
            )
        setattr(request, ALIVE_ATTRIBUTE, known)
    return known


def operator(request: HttpRequest) -> str:
    return f"admin user {request.user.pk}"


class OnlineFilter(admin.SimpleListFilter):
    title = "online"
    parameter_name = "online"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Online"), ("no", "Offline")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[WebSocketSession]
    ) -> QuerySet[WebSocketSession]:
        if self.value() == "yes":
            return queryset.filter(Q(is_online=True))
        if self.value() == "no":
            return queryset.filter(Q(is_online=False))
        return queryset


class ReadOnlySessionMixin(SessionAdminBase):
    """Rows are the workers' audit trail: nobody adds or edits them by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebSocketSession]:
        sessions = cast(WebSocketSessionQuerySet, super().get_queryset(request))
        return sessions.with_online(alive_workers_for(request))

    @admin.display(boolean=True, description="online", ordering="is_online")
    def online(self, session: WebSocketSession) -> bool:
        return bool(session.is_online)  # type: ignore[attr-defined]  # with_online() adds it


@admin.register(WebSocketSession)
class WebSocketSessionAdmin(ReadOnlySessionMixin, SessionModelAdmin):
    list_display = (
        "id",
        "user",
        "online",
        "client_ip",
        "worker",
        "connected_at",
        "closed_at",
        "close_code",
    )
    list_filter = (OnlineFilter, ("user", admin.RelatedOnlyFieldListFilter))
    search_fields = ("username", "user__username", "client_ip")
    list_select_related = ("user",)
    date_hierarchy = "connected_at"
    fields = (
        "id",
        "user",
        "username",
        "online",
        "client_ip",
        "user_agent",
        "worker",
        "channel_name",
        "connected_at",
        "closed_at",
        "close_code",
    )
    readonly_fields = fields
    actions = ["disconnect_selected"]

    @admin.action(description="Disconnect selected sessions", permissions=["disconnect"])
    def disconnect_selected(
        self, request: HttpRequest, queryset: QuerySet[WebSocketSession]
    ) -> None:
        online = queryset.filter(Q(is_online=True))
        count = sessions_disconnect(sessions=online, by=operator(request))
        skipped = queryset.count() - count
        self.message_user(
            request,
            f"Disconnected {count} session(s) (close 4501)"
            + (f"; {skipped} selected were not online." if skipped else "."),
            messages.SUCCESS if count else messages.WARNING,
        )

    def has_disconnect_permission(self, request: HttpRequest) -> bool:
        """Cutting sessions is for staff who may change users."""
        return request.user.has_perm("accounts.change_user")


class WebSocketSessionInline(ReadOnlySessionMixin, SessionTabularInline):
    """A user's most recent sessions, on the user's admin page."""

    model = WebSocketSession
    fields = ("id", "online", "client_ip", "worker", "connected_at", "closed_at", "close_code")
    readonly_fields = fields
    extra = 0
    max_num = 0
    show_change_link = True
    verbose_name_plural = f"WebSocket sessions (the {INLINE_RECENT} most recent)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebSocketSession]:
        queryset = super().get_queryset(request)
        recent = WebSocketSession.objects.order_by("-connected_at").values("pk")
        user_id = request.resolver_match.kwargs.get("object_id") if request.resolver_match else None
        if user_id is None:
            return queryset.none()
        return queryset.filter(pk__in=recent.filter(user_id=user_id)[:INLINE_RECENT])


# The user page is accounts'; what it shows of sessions comes from here, so that accounts
# imports nothing of realtime. Importing accounts.admin above registered it first.
admin.site.unregister(User)


@admin.register(User)
class UserAdmin(AccountsUserAdmin):
    """Accounts' user admin, with the user's recent sessions and a disconnect action."""

    actions = [*AccountsUserAdmin.actions, "disconnect_sessions"]

    def get_inlines(
        self, request: HttpRequest, obj: Any
    ) -> "list[type[InlineModelAdmin[Any, Any]]]":
        return [WebSocketSessionInline] if obj is not None else []

    @admin.action(description="Disconnect all sessions (tokens stay valid)", permissions=["change"])
    def disconnect_sessions(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            user_sessions_disconnect(user_id=user.pk, by=operator(request))
        self.message_user(
            request,
            f"Disconnected every session of {queryset.count()} user(s) (close 4501).",
            messages.SUCCESS,
        )
