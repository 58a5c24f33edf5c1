"""User management in the Django admin: token revocation, the user's sessions, disconnects."""

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from accounts.models import User
from accounts.services import user_revoke_tokens
from realtime.admin import WebSocketSessionInline, operator
from realtime.registry import user_sessions_disconnect


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ("username", "email", "is_active", "is_staff", "tokens_revoked_at")
    readonly_fields = ("token_version", "tokens_revoked_at", "last_login", "date_joined")
    fieldsets = DjangoUserAdmin.fieldsets + (
        ("Tokens", {"fields": ("token_version", "tokens_revoked_at")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("username", "email", "password1", "password2")}),
    )
    actions = ["revoke_tokens", "disconnect_sessions"]

    def get_inlines(self, request, obj):
        return [WebSocketSessionInline] if obj is not None else []

    @admin.action(description="Revoke tokens and disconnect all sessions", permissions=["change"])
    def revoke_tokens(self, request, queryset):
        for user in queryset:
            user_revoke_tokens(user=user, reason=f"admin action by {request.user.pk}")
        self.message_user(
            request, f"Revoked tokens of {queryset.count()} user(s).", messages.SUCCESS
        )

    @admin.action(description="Disconnect all sessions (tokens stay valid)", permissions=["change"])
    def disconnect_sessions(self, request, queryset):
        for user in queryset:
            user_sessions_disconnect(user_id=user.pk, by=operator(request))
        self.message_user(
            request,
            f"Disconnected every session of {queryset.count()} user(s) (close 4501).",
            messages.SUCCESS,
        )
