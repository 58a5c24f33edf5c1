"""Usernames and emails unique once normalised, step 2 of 2: the keys required and unique,
replacing the old LOWER(email) constraint (SQLite's LOWER folds ASCII only). A migration of
its own: on PostgreSQL, the constraints are built after the keys' UPDATE has committed."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_user_identity_keys")]

    operations = [
        migrations.AlterField(
            model_name="user",
            name="username_key",
            field=models.TextField(
                editable=False, help_text="The username NFKC-normalised and case-folded (unique)."
            ),
        ),
        migrations.AlterField(
            model_name="user",
            name="email_key",
            field=models.TextField(
                editable=False, help_text="The email normalised like the username (unique)."
            ),
        ),
        migrations.RemoveConstraint(model_name="user", name="accounts_user_email_ci_unique"),
        migrations.AddConstraint(
            model_name="user",
            constraint=models.UniqueConstraint(
                fields=["username_key"], name="accounts_user_username_key_uq"
            ),
        ),
        migrations.AddConstraint(
            model_name="user",
            constraint=models.UniqueConstraint(
                fields=["email_key"], name="accounts_user_email_key_uq"
            ),
        ),
    ]
