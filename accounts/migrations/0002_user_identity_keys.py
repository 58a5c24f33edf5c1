"""Usernames and emails unique once normalised (accounts/identity.py), step 1 of 2: the key
columns, filled for every existing account.

Accounts that already share a key (possible before: 'Ölaf' beside 'ölaf' on SQLite, a
fullwidth 'Ｒtcase' beside 'rtcase') stop the migration with a list of them: renaming an
account silently would lock its owner out, so an operator decides which one keeps the name.
"""

from django.db import migrations, models

from accounts.identity import email_key, username_key

BATCH = 2000


class DuplicateIdentities(Exception):
    """Accounts whose usernames or emails are the same once normalised."""


def identity_keys_fill(apps, schema_editor):
    """Store both keys of every account; refuse (roll back) if two accounts share one."""
    User = apps.get_model("accounts", "User")
    owners: dict[tuple[str, str], list[int]] = {}
    changed = []
    rows = User.objects.order_by("pk").only("pk", "username", "email")
    for user in rows.iterator(chunk_size=BATCH):
        user.username_key = username_key(user.username)
        user.email_key = email_key(user.email)
        owners.setdefault(("username", user.username_key), []).append(user.pk)
        owners.setdefault(("email", user.email_key), []).append(user.pk)
        changed.append(user)
        if len(changed) == BATCH:
            User.objects.bulk_update(changed, ["username_key", "email_key"])
            changed = []
    User.objects.bulk_update(changed, ["username_key", "email_key"])
    shared = {key: pks for key, pks in owners.items() if len(pks) > 1}
    if shared:
        listed = "; ".join(
            f"{field} {key!r}: ids {', '.join(map(str, pks))}"
            for (field, key), pks in sorted(shared.items())
        )
        raise DuplicateIdentities(
            f"{len(shared)} group(s) of accounts share a username or an email once "
            f"normalised (NFKC, case-folded), which the new unique constraints refuse: "
            f"{listed}. Rename or merge all but one account of each group (with the previous "
            f"release: the admin or `manage.py shell`), then run migrate again."
        )


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="user",
            name="username_key",
            field=models.TextField(
                editable=False,
                null=True,
                help_text="The username NFKC-normalised and case-folded (unique).",
            ),
        ),
        migrations.AddField(
            model_name="user",
            name="email_key",
            field=models.TextField(
                editable=False,
                null=True,
                help_text="The email normalised like the username (unique).",
            ),
        ),
        migrations.RunPython(identity_keys_fill, migrations.RunPython.noop, elidable=False),
    ]
