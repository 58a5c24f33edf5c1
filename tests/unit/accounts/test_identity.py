"""Usernames and emails are unique once normalised (NFKC, case-folded), in the database on
every backend: registration and the admin answer a field error, never a 503
(accounts/identity.py, accounts/models.py, migrations 0002 and 0003)."""

import re

import pytest
from django.db import IntegrityError, connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from rest_framework.test import APIClient

from accounts.identity import email_key, username_key
from accounts.models import User
from tests.conftest import PASSWORD, UserFactory

STRONG_PASSWORD = "a long and unusual passphrase 42"
USERNAME_TAKEN = {"username": ["A user with that username already exists."]}
EMAIL_TAKEN = {"email": ["A user with that email already exists."]}


def register(username: str, email: str = "new@example.com"):
    return APIClient().post(
        "/api/auth/register/",
        {"username": username, "email": email, "password": STRONG_PASSWORD},
        format="json",
    )


# -- the keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("one", "other"),
    [("Ｒtcase", "rtcase"), ("Ölaf", "ölaf"), ("STRASSE", "straße"), ("ǅemal", "džemal")],
)
def test_usernames_a_reader_cannot_tell_apart_share_a_key(one, other):
    assert username_key(one) == username_key(other)


@pytest.mark.parametrize(
    "spelling", ["x@BÜCHER.example", "X@bücher.EXAMPLE", "x@xn--bcher-kva.example"]
)
def test_an_idn_email_in_any_case_or_in_punycode_shares_one_key(spelling):
    assert email_key(spelling) == email_key("x@bücher.example") == "x@xn--bcher-kva.example"


def test_an_email_idna_cannot_encode_is_compared_folded():
    assert email_key("A@B..Example") == "a@b..example"


@pytest.mark.django_db
def test_saving_a_user_stores_both_keys_and_a_partial_save_of_the_username_updates_its_key():
    user = UserFactory(username="Ｒtcase", email="R@BÜCHER.example")
    assert (user.username_key, user.email_key) == ("rtcase", "r@xn--bcher-kva.example")

    user.username = "Ölaf"
    user.save(update_fields=["username"])

    assert User.objects.values_list("username_key", flat=True).get(pk=user.pk) == "ölaf"


# -- registration ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_fullwidth_username_beside_its_ascii_spelling_is_refused_with_400():
    assert register("rtcase", "rtcase@example.com").status_code == 201

    response = register("Ｒtcase", "other@example.com")

    assert response.status_code == 400
    assert response.json() == USERNAME_TAKEN
    assert User.objects.count() == 1


@pytest.mark.django_db
def test_an_exact_fullwidth_duplicate_is_refused_with_400_not_503():
    first = register("Ｒtcase", "first@example.com")
    assert first.status_code == 201
    assert first.json()["username"] == "Rtcase"  # stored NFKC-normalised, as Django does

    response = register("Ｒtcase", "second@example.com")

    assert response.status_code == 400
    assert response.json() == USERNAME_TAKEN


@pytest.mark.django_db
@pytest.mark.parametrize("second", ["ölaf", "ÖLAF", "Ölaf"])
def test_olaf_in_another_case_is_refused_with_400_on_every_database(second):
    assert register("Ölaf", "olaf1@example.com").status_code == 201

    response = register(second, "olaf2@example.com")

    assert response.status_code == 400
    assert response.json() == USERNAME_TAKEN


@pytest.mark.django_db
@pytest.mark.parametrize(
    "second", ["x@BÜCHER.example", "X@bücher.example", "x@xn--bcher-kva.example"]
)
def test_an_idn_email_in_another_case_or_punycode_is_refused_with_400_not_503(second):
    assert register("first", "x@bücher.example").status_code == 201

    response = register("second", second)

    assert response.status_code == 400
    assert response.json() == EMAIL_TAKEN


@pytest.mark.django_db
def test_a_username_longer_than_150_once_normalised_is_refused_with_400():
    response = register("ﬀ" * 100)  # 100 characters typed, 200 once NFKC-normalised

    assert response.status_code == 400
    assert response.json() == {"username": ["Ensure this field has no more than 150 characters."]}


@pytest.mark.django_db
def test_a_username_that_normalises_to_a_space_is_refused_like_djangos_form_does():
    response = register("a\ufe70")  # ARABIC FATHATAN ISOLATED FORM: NFKC gives a space

    assert response.status_code == 400
    assert response.json() == {
        "username": [
            "Enter a valid username. This value may contain only letters, numbers, and "
            "@/./+/-/_ characters."
        ]
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("existing", "username", "email", "expected"),
    [
        ({"username": "Ölaf"}, "ölaf", "new@example.com", USERNAME_TAKEN),
        ({"email": "x@bücher.example"}, "new", "X@BÜCHER.example", EMAIL_TAKEN),
    ],
)
def test_a_registration_that_loses_the_race_to_the_database_answers_the_field_error(
    monkeypatch, existing, username, email, expected
):
    UserFactory(**existing)
    # The serializer's check ran before the other registration committed.
    monkeypatch.setattr("accounts.serializers.user_identity_conflicts", lambda **kw: [])

    response = register(username, email)

    assert response.status_code == 400
    assert response.json() == expected


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("existing", "username", "email", "expected"),
    [
        ({"username": "Ölaf"}, "ölaf", "new@example.com", USERNAME_TAKEN),
        ({"email": "x@bücher.example"}, "new", "X@BÜCHER.example", EMAIL_TAKEN),
    ],
)
def test_the_field_comes_from_the_constraint_when_the_conflict_is_gone_by_the_recheck(
    monkeypatch, existing, username, email, expected
):
    UserFactory(**existing)
    monkeypatch.setattr("accounts.serializers.user_identity_conflicts", lambda **kw: [])
    monkeypatch.setattr("accounts.services.user_identity_conflicts", lambda **kw: [])

    response = register(username, email)

    assert response.status_code == 400
    assert response.json() == expected


@pytest.mark.django_db
def test_the_database_refuses_a_duplicate_key_whatever_the_code_does():
    UserFactory(username="Ölaf")

    with pytest.raises(IntegrityError):
        User.objects.create_user(username="ölaf", email="other@example.com", password=PASSWORD)


@pytest.mark.django_db
def test_login_matches_the_username_exactly_as_djangos_model_backend_does():
    UserFactory(username="Ölaf")
    client = APIClient()

    def login(username: str) -> int:
        body = {"username": username, "password": PASSWORD}
        return client.post("/api/auth/token/", body, format="json").status_code

    assert (login("Ölaf"), login("ölaf")) == (200, 401)


# -- the admin ------------------------------------------------------------------------------


@pytest.fixture
def admin_client(plain_static_files, db) -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True, username="root"))
    return client


def page_errors(html: str) -> list[str]:
    """The field errors an admin form page shows."""
    return re.findall(r'<ul class="errorlist"[^>]*><li>([^<]+)</li>', html)


@pytest.mark.parametrize(
    ("username", "email", "error"),
    [
        ("ÖLAF", "new@example.com", "A user with that username already exists."),
        ("new", "X@BÜCHER.example", "A user with that email already exists."),
    ],
)
def test_the_admin_add_form_refuses_a_taken_username_or_email_with_a_form_error(
    admin_client, username, email, error
):
    UserFactory(username="ölaf", email="x@bücher.example")
    count = User.objects.count()

    page = admin_client.post(
        "/admin/accounts/user/add/",
        {
            "username": username,
            "email": email,
            "password1": STRONG_PASSWORD,
            "password2": STRONG_PASSWORD,
            "usable_password": "true",
        },
    )

    assert page.status_code == 200
    assert page_errors(page.content.decode()) == [error]
    assert User.objects.count() == count


def test_the_admin_change_form_refuses_another_accounts_email_with_a_form_error(admin_client):
    UserFactory(username="ölaf", email="x@bücher.example")
    bob = UserFactory(username="bob", email="bob@example.com")
    change = f"/admin/accounts/user/{bob.pk}/change/"
    form = admin_client.get(change)
    assert form.status_code == 200

    page = admin_client.post(
        change,
        {
            "username": "bob",
            "email": "X@BÜCHER.example",
            "is_active": "on",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            "initial-date_joined_0": "2026-01-01",
            "initial-date_joined_1": "00:00:00",
            "websocketsession_set-TOTAL_FORMS": "0",
            "websocketsession_set-INITIAL_FORMS": "0",
        },
    )

    assert page.status_code == 200
    assert page_errors(page.content.decode()) == ["A user with that email already exists."]
    bob.refresh_from_db()
    assert bob.email == "bob@example.com"


# -- the migration ---------------------------------------------------------------------------


def migrate_to_latest() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.fixture
def old_users(transactional_db):
    """The user table as migration 0001 left it (its model's manager); the database is
    migrated to the latest state again afterwards."""
    before = [("accounts", "0001_initial")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    yield executor.loader.project_state(before).apps.get_model("accounts", "User").objects
    migrate_to_latest()


def test_the_migration_fills_the_keys_of_existing_accounts(old_users):
    old_users.create(username="Rtcase", email="R@BÜCHER.example", password="!")
    old_users.create(username="Ölaf", email="olaf@example.com", password="!")

    migrate_to_latest()

    assert sorted(User.objects.values_list("username_key", "email_key")) == [
        ("rtcase", "r@xn--bcher-kva.example"),
        ("ölaf", "olaf@example.com"),
    ]


def test_the_migration_stops_naming_the_accounts_that_share_a_key(old_users):
    first = old_users.create(username="Ölaf", email="a@example.com", password="!")
    second = old_users.create(username="ölaf", email="b@example.com", password="!")

    with pytest.raises(Exception) as refused:
        migrate_to_latest()

    assert type(refused.value).__name__ == "DuplicateIdentities"
    assert str(refused.value) == (
        "1 group(s) of accounts share a username or an email once normalised (NFKC, "
        f"case-folded), which the new unique constraints refuse: username 'ölaf': ids "
        f"{first.pk}, {second.pk}. Rename or merge all but one account of each group (with "
        "the previous release: the admin or `manage.py shell`), then run migrate again."
    )
    old_users.filter(pk=second.pk).update(username="olaf2")  # so the teardown can migrate
