"""The normalised identity of a username or an email: the form uniqueness compares.

Two spellings a reader cannot tell apart must not name two accounts: fullwidth 'Ｒtcase'
and 'rtcase', 'Ölaf' and 'ölaf', 'x@BÜCHER.example' and 'x@bücher.example'. The keys are
computed in Python and stored beside the values (`User.username_key`, `User.email_key`),
unique in the database: SQLite's LOWER() folds ASCII only, so a functional index could not
be the same rule on SQLite and PostgreSQL. Changing a key's definition needs a migration
that recomputes the stored keys.
"""

import unicodedata

USERNAME_TAKEN = "A user with that username already exists."
EMAIL_TAKEN = "A user with that email already exists."
TAKEN = {"username": USERNAME_TAKEN, "email": EMAIL_TAKEN}


def text_key(value: str) -> str:
    """`value` NFKC-normalised and case-folded (then NFKC again, since folding can leave a
    string that is not in NFKC): Unicode's NFKC_Casefold, near enough."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())


def username_key(username: str) -> str:
    """The key two usernames share when they are the same name."""
    return text_key(username)


def email_key(email: str) -> str:
    """The key two email addresses share when they are the same mailbox, as far as we tell:
    folded like usernames, the domain in its ASCII (IDNA) form, so 'x@BÜCHER.example',
    'x@bücher.example' and 'x@xn--bcher-kva.example' are one address."""
    local, at, domain = text_key(email).rpartition("@")
    if not at:
        return domain
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        pass  # not a domain IDNA can encode (an empty label, say): compare it folded
    return f"{local}@{domain}"
