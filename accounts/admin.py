"""User management in the Django admin: token revocation; simplejwt's refresh-token pages
without the raw tokens. The user's sessions and their disconnect action are realtime's: its
admin extends this user page (realtime/admin.py)."""

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from rest_framework_simplejwt.token_blacklist import admin as token_admin
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts.models import User
from accounts.services import user_revoke_tokens

# The admin's classes are generic to mypy only (no django-stubs-ext at run time).
if TYPE_CHECKING:
    _UserAdminBase = DjangoUserAdmin[User]
    _AdminBase = admin.ModelAdmin[Any]
else:
    _UserAdminBase = DjangoUserAdmin
    _AdminBase = object


@admin.register(User)
class UserAdmin(_UserAdminBase):
    list_display = ("username", "email", "is_active", "is_staff", "tokens_revoked_at")
    readonly_fields = ("token_version", "tokens_revoked_at", "last_login", "date_joined")
    # Django's UserAdmin.fieldsets is a tuple; the stubs type ModelAdmin's as optional.
    fieldsets = DjangoUserAdmin.fieldsets + (  # type: ignore[operator]
        ("Tokens", {"fields": ("token_version", "tokens_revoked_at")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("username", "email", "password1", "password2")}),
    )
    actions = ["revoke_tokens"]

    @admin.action(description="Revoke tokens and disconnect all sessions", permissions=["change"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            user_revoke_tokens(user=user, reason=f"admin action by {request.user.pk}")
        self.message_user(
            request, f"Revoked tokens of {queryset.count()} user(s).", messages.SUCCESS
        )


# A mixin for ModelAdmins: to mypy it is one (the methods it extends), at run time a plain class.
class RawTokenHidden(_AdminBase):
    """A ModelAdmin mixin: no filter on the raw token in the URL (`?token__startswith=…`
    would let a viewer read tokens one character at a time): 400, as any refused lookup."""

    raw_value_path: str

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        if lookup == self.raw_value_path or lookup.startswith(f"{self.raw_value_path}__"):
            return False
        return super().lookup_allowed(lookup, value, request)


# simplejwt's pages (read-only) show each outstanding token's raw value on its change page:
# anyone with view permission could use another user's refresh token. Registered again
# showing only what identifies a token.
admin.site.unregister(OutstandingToken)
admin.site.unregister(BlacklistedToken)


@admin.register(OutstandingToken)
class OutstandingTokenAdmin(RawTokenHidden, token_admin.OutstandingTokenAdmin):
    fields = ("jti", "user", "created_at", "expires_at")
    raw_value_path = "token"

    # simplejwt's admin declares (*args, **kwargs) -> list; Django takes any sequence.
    def get_readonly_fields(  # type: ignore[override]
        self, request: HttpRequest, obj: Model | None = None
    ) -> tuple[str, ...]:
        return self.fields


@admin.register(BlacklistedToken)
class BlacklistedTokenAdmin(RawTokenHidden, token_admin.BlacklistedTokenAdmin):
    fields = ("token_jti", "token_user", "token_created_at", "token_expires_at", "blacklisted_at")
    raw_value_path = "token__token"

    def get_readonly_fields(
        self, request: HttpRequest, obj: Model | None = None
    ) -> tuple[str, ...]:
        return self.fields
