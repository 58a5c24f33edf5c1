"""User management in the Django admin, with token revocation."""

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from accounts.models import User
from accounts.services import user_revoke_tokens


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
    actions = ["revoke_tokens"]

    @admin.action(description="Revoke tokens and disconnect all sessions")
    def revoke_tokens(self, request, queryset):
        for user in queryset:
            user_revoke_tokens(user=user, reason=f"admin action by {request.user.pk}")
        self.message_user(
            request, f"Revoked tokens of {queryset.count()} user(s).", messages.SUCCESS
        )
