"""Accounts: password policy, lockout, tokens. Pure rules; the handlers do the I/O."""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from zxcvbn import zxcvbn

from shared.runtime.problems import Problem

MIN_PASSWORD = 10
FREE_FAILURES = 5  # then each failure locks the account for longer: 1, 2, 4 … minutes, at most an hour
MAX_LOCK = timedelta(hours=1)


def check_password(password: str, *, email: str = "") -> None:
    """At least 10 characters, and not among the passwords attackers try first (zxcvbn's lists)."""
    if len(password) < MIN_PASSWORD:
        raise Problem(
            422,
            "weak_password",
            f"Le mot de passe doit compter au moins {MIN_PASSWORD} caractères.",
            fields={"password": "trop court"},
        )
    if zxcvbn(password[:64], user_inputs=[email, *email.split("@")])["score"] < 2:
        raise Problem(
            422,
            "weak_password",
            "Ce mot de passe est trop courant ou trop facile à deviner.",
            fields={"password": "trop facile à deviner"},
        )


def lock_after(failures: int, now: datetime) -> datetime | None:
    """When an account that failed `failures` times in a row may try again (None: now)."""
    if failures < FREE_FAILURES:
        return None
    return now + min(MAX_LOCK, timedelta(minutes=2 ** (failures - FREE_FAILURES)))


def new_secret() -> str:
    """A random token for refresh tokens and invitations (only its hash is stored)."""
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Scope:
    """What an account acts on: the organisations of a manager, the departments of a referent."""

    organizations: tuple[str, ...] = ()
    departments: tuple[str, ...] = ()


NO_SCOPE = Scope()
INVALID_CREDENTIALS = Problem(401, "invalid_credentials", "E-mail ou mot de passe incorrect.")
LOCKED = Problem(429, "account_locked", "Trop d’essais : réessayez dans quelques minutes.")
