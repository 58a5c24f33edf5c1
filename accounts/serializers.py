"""Request bodies of the auth API, validated once at the edge."""

from typing import Any

from django.contrib.auth import password_validation
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from accounts.identity import EMAIL_TAKEN, USERNAME_TAKEN
from accounts.models import User, user_identity_conflicts


class UsernameField(serializers.CharField):
    """A username as `create_user` will store it (NFKC-normalised), so the length and
    character checks judge the stored name, as Django's own UsernameField does."""

    def to_internal_value(self, data: Any) -> str:
        return User.normalize_username(super().to_internal_value(data))


# Request bodies only: no instance behind them (None), unlike the user serializers.
class RegisterSerializer(serializers.Serializer[None]):
    username = UsernameField(max_length=150, validators=[UnicodeUsernameValidator()])
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(write_only=True, max_length=128, trim_whitespace=False)

    # Uniqueness compares the normalised forms (accounts/identity.py), as the database does.
    def validate_username(self, value: str) -> str:
        if user_identity_conflicts(username=value):
            raise serializers.ValidationError(USERNAME_TAKEN)
        return value

    def validate_email(self, value: str) -> str:
        if user_identity_conflicts(email=value):
            raise serializers.ValidationError(EMAIL_TAKEN)
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        candidate = User(username=attrs["username"], email=attrs["email"])
        try:
            password_validation.validate_password(attrs["password"], user=candidate)
        except DjangoValidationError as e:
            raise serializers.ValidationError({"password": list(e.messages)}) from e
        return attrs


class UserSerializer(serializers.ModelSerializer[User]):
    class Meta:
        model = User
        fields = ["id", "username", "email"]


class MeSerializer(serializers.ModelSerializer[User]):
    class Meta:
        model = User
        fields = ["id", "username", "email", "is_staff"]


class LoginSerializer(serializers.Serializer[None]):
    # NFKC-normalised as Django's login form does (the admin's), so both doors match one name.
    username = UsernameField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False)


class RefreshSerializer(serializers.Serializer[None]):
    refresh = serializers.CharField()


class VerifySerializer(serializers.Serializer[None]):
    token = serializers.CharField()


class TokenPairSerializer(serializers.Serializer[dict[str, str]]):
    access = serializers.CharField()
    refresh = serializers.CharField()
