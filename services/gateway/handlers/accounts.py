"""Accounts, sessions (JWT + refresh tokens), lockout and referent invitations, in the gateway's own store."""

import asyncio
import contextlib
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError

from services.gateway import domain
from shared.errors import Conflict, Gone, Unauthenticated
from shared.events import AccountOpened, Actor, Event, PasswordResetRequested, ReferentInvited, Role, new_id
from shared.events.vocabulary import Sealed
from shared.runtime.app import ServiceContext
from shared.runtime.ports import ConcurrencyError, DuplicateKeyError
from shared.runtime.streams import append_events, decide_and_append
from shared.runtime.vault import Vault
from shared.web import identity

ACCOUNTS, ATTEMPTS, REFRESH_TOKENS, INVITATIONS = "accounts", "login_attempts", "refresh_tokens", "invitations"
RESETS = "password_resets"  # by the digest of their token: who asked, until when, used or not
# argon2id at OWASP's recommended cost (19 MiB, 2 passes, 1 lane): ~35 ms of one core per sign-up of a spike
HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# verifying against this when the e-mail is unknown makes both failures cost the same time
DUMMY_HASH = HASHER.hash(domain.new_secret())
ALGORITHM = identity.ALGORITHM
EMAIL_TAKEN = Conflict("email_taken", "Un compte existe déjà avec cette adresse : connectez-vous.")
SESSION_EXPIRED = Unauthenticated("invalid_refresh_token", "Votre session a expiré : reconnectez-vous.")
TOKEN_EXPIRED = Unauthenticated("token_expired", "Votre session a expiré : reconnectez-vous.")
UNAUTHENTICATED = Unauthenticated("unauthenticated", "Vous devez être connecté.")
INVITATION_INVALID = Gone("invitation_invalid", "Cette invitation a déjà servi ou a expiré.")
RESET_INVALID = Gone("reset_invalid", "Ce lien a déjà servi ou a expiré : demandez-en un nouveau.")


def now() -> datetime:
    return datetime.now(UTC)


class Accounts:
    def __init__(self, ctx: ServiceContext) -> None:
        self.documents, self.store, self.settings = ctx.documents, ctx.store, ctx.settings
        self.vault = Vault(ctx.keys)
        self.secret = ctx.settings.secret("jwt_secret")

    def email_key(self, email: str) -> str:
        pepper = self.settings.personal_data_pepper.encode()
        return hmac.new(pepper, email.strip().lower().encode(), hashlib.sha256).hexdigest()

    async def setup(self) -> None:
        await self.documents.ensure_index(ACCOUNTS, ["email_key"], unique=True)

    # ---- accounts ----

    async def create(
        self,
        email: str,
        password: str,
        role: Role,
        account_id: str | None = None,
        scope: domain.Scope = domain.NO_SCOPE,
        announce: bool = True,
    ) -> dict[str, Any]:
        """A new account; the same e-mail and password again returns the existing one (idempotent).

        Without `announce` nobody hears of it (no welcome e-mail) until `announce` is called: a
        registration that may still be refused opens its account that way.
        """
        domain.check_password(password, email=email)
        account_id = account_id or new_id()
        account = {
            "id": account_id,
            "email_key": self.email_key(email),
            "role": role,
            "email": (await self.vault.seal(account_id, {"email": email.strip().lower()})).model_dump(),
            # argon2 is deliberately slow (~0.1 s of CPU): off the event loop, which keeps answering
            "password_hash": await asyncio.to_thread(HASHER.hash, password),
            "organizations": list(scope.organizations),
            "departments": list(scope.departments),
            "created_at": now().isoformat(),
        }
        try:
            await self.documents.insert(ACCOUNTS, account_id, account)
        except DuplicateKeyError:
            existing = await self.by_email(email)
            if existing and existing["role"] == role and await self._verify(existing["password_hash"], password):
                if announce:  # a retry after a crash between the two writes announces it
                    await self.announce(existing)
                return existing
            raise EMAIL_TAKEN() from None
        if announce:
            await self.announce(account)
        return account

    async def announce(self, account: dict[str, Any]) -> None:
        """AccountOpened, once: the welcome e-mail follows."""
        opened = AccountOpened(account_id=account["id"], role=account["role"], email=Sealed(**account["email"]))
        with contextlib.suppress(ConcurrencyError):  # announced already
            await append_events(self.store, opened.stream_id(), 0, [opened])

    async def account(self, account_id: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self.documents.get(ACCOUNTS, account_id)
        return found

    async def by_email(self, email: str) -> dict[str, Any] | None:
        found = await self.documents.find(ACCOUNTS, {"email_key": self.email_key(email)}, limit=1)
        return found[0] if found else None

    async def add_organization(self, account_id: str, organization_id: str) -> None:
        account = await self.documents.get(ACCOUNTS, account_id)
        if account and organization_id not in account["organizations"]:
            await self.documents.put(
                ACCOUNTS, account_id, {**account, "organizations": [*account["organizations"], organization_id]}
            )

    async def delete(self, account_id: str) -> None:
        """Erasure (or a registration refused): the account and its sealed e-mail go; its sessions with it."""
        await self.documents.delete(ACCOUNTS, account_id)
        await self.vault.forget(account_id)

    @staticmethod
    async def _verify(password_hash: str, password: str) -> bool:
        def verify() -> bool:
            try:
                return HASHER.verify(password_hash, password)
            except (VerifyMismatchError, InvalidHashError):
                return False

        return await asyncio.to_thread(verify)

    # ---- sessions ----

    async def login(self, email: str, password: str) -> dict[str, Any]:
        """Tokens for valid credentials. Unknown e-mail and wrong password answer alike, in the same time."""
        key = self.email_key(email)
        attempts = await self.documents.get(ATTEMPTS, key) or {"failures": 0, "locked_until": None}
        if attempts["locked_until"] and datetime.fromisoformat(attempts["locked_until"]) > now():
            raise domain.LOCKED()
        account = await self.by_email(email)
        valid = await self._verify(account["password_hash"] if account else DUMMY_HASH, password)
        if not (valid and account):
            failures = attempts["failures"] + 1
            locked = domain.lock_after(failures, now())
            await self.documents.put(
                ATTEMPTS, key, {"failures": failures, "locked_until": locked.isoformat() if locked else None}
            )
            raise domain.INVALID_CREDENTIALS()
        if attempts["failures"]:
            await self.documents.delete(ATTEMPTS, key)
        return await self.issue(account)

    async def issue(self, account: dict[str, Any]) -> dict[str, Any]:
        issued = now()
        claims = {
            "sub": account["id"],
            "role": account["role"],
            "iat": issued,
            "exp": issued + timedelta(seconds=self.settings.access_token_ttl_s),
            "jti": new_id(),
        }
        refresh = domain.new_secret()
        await self.documents.insert(
            REFRESH_TOKENS,
            domain.digest(refresh),
            {
                "account_id": account["id"],
                "revoked": False,
                "issued_at": issued.isoformat(),
                "expires_at": (issued + timedelta(seconds=self.settings.refresh_token_ttl_s)).isoformat(),
            },
        )
        return {
            "access_token": jwt.encode(claims, self.secret, algorithm=ALGORITHM),
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in": self.settings.access_token_ttl_s,
            "role": account["role"],
            "account_id": account["id"],
        }

    async def refresh(self, token: str) -> dict[str, Any]:
        """New tokens for a live refresh token, which is used up (rotation)."""
        stored = await self.documents.get(REFRESH_TOKENS, domain.digest(token))
        if stored is None or stored["revoked"] or datetime.fromisoformat(stored["expires_at"]) <= now():
            raise SESSION_EXPIRED()
        await self.documents.put(REFRESH_TOKENS, domain.digest(token), {**stored, "revoked": True})
        account = await self.documents.get(ACCOUNTS, stored["account_id"])
        # a new password ends the sessions opened before it
        if account is None or stored.get("issued_at", "") < account.get("sessions_valid_from", ""):
            raise SESSION_EXPIRED()
        return await self.issue(account)

    async def logout(self, token: str) -> None:
        stored = await self.documents.get(REFRESH_TOKENS, domain.digest(token))
        if stored is not None:
            await self.documents.put(REFRESH_TOKENS, domain.digest(token), {**stored, "revoked": True})

    def authenticate(self, authorization: str | None) -> Actor | None:
        """The actor of a Bearer access token; None without one; 401 for a bad or expired one."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise UNAUTHENTICATED()
        try:
            return identity.actor_of(token, self.secret)  # the rules the pages of other services check too
        except identity.TokenExpired:
            raise TOKEN_EXPIRED() from None
        except identity.TokenInvalid:
            raise UNAUTHENTICATED() from None

    # ---- forgotten passwords ----

    async def request_password_reset(self, email: str) -> None:
        """A single-use link by e-mail (PasswordResetRequested, sent by the notifications service) when an account
        has this address; nothing otherwise. The caller answers alike either way, before this runs."""
        account = await self.by_email(email)
        if account is None:
            return
        token = domain.new_secret()
        expires_at = now() + timedelta(seconds=self.settings.password_reset_ttl_s)
        reset = {"account_id": account["id"], "used": False, "expires_at": expires_at.isoformat()}
        await self.documents.insert(RESETS, domain.digest(token), reset)
        requested = PasswordResetRequested(
            account_id=account["id"],
            expires_at=expires_at,
            reset=await self.vault.seal(reset_key(token), {"token": token}),
        )

        async def decide(_: list[Event]) -> list[Event]:
            return [requested]

        await decide_and_append(self.store, requested.stream_id(), decide)

    async def reset_password(self, token: str, password: str) -> None:
        """The new password of the link's account: the link is used up, the account unlocked, its sessions ended."""
        reset = await self.documents.get(RESETS, domain.digest(token))
        if reset is None or reset["used"] or datetime.fromisoformat(reset["expires_at"]) <= now():
            raise RESET_INVALID()
        account = await self.account(reset["account_id"])
        email = (await self.vault.open(Sealed(**account["email"])) or {}).get("email") if account else None
        if account is None or email is None:  # closed or erased since
            raise RESET_INVALID()
        domain.check_password(password, email=email)
        password_hash = await asyncio.to_thread(HASHER.hash, password)
        changed = {**account, "password_hash": password_hash, "sessions_valid_from": now().isoformat()}
        await self.documents.put(ACCOUNTS, account["id"], changed)
        await self.documents.put(RESETS, domain.digest(token), {**reset, "used": True})
        await self.vault.forget(reset_key(token))
        await self.documents.delete(ATTEMPTS, self.email_key(email))

    # ---- referent invitations ----

    async def invite(self, email: str, departments: list[str], admin: Actor) -> str:
        """A single-use invitation token, e-mailed by the notifications service (ReferentInvited) and
        known to nobody else; returns the invitation's id."""
        token, email = domain.new_secret(), email.strip().lower()
        expires_at = now() + timedelta(seconds=self.settings.invitation_ttl_s)
        await self.documents.insert(
            INVITATIONS,
            domain.digest(token),
            {
                "email": (await self.vault.seal(domain.digest(token), {"email": email})).model_dump(),
                "departments": departments,
                "invited_by": admin.id,
                "used": False,
                "expires_at": expires_at.isoformat(),
            },
        )
        invited = ReferentInvited(
            invitation_id=new_id(),
            departments=departments,
            invited_by=admin.id,
            expires_at=expires_at,
            invitation=await self.vault.seal(domain.digest(token), {"email": email, "token": token}),
        )
        await append_events(self.store, invited.stream_id(), 0, [invited], actor=admin)
        return invited.invitation_id

    async def invitation(self, token: str) -> dict[str, Any]:
        found = await self.documents.get(INVITATIONS, domain.digest(token))
        if found is None or found["used"] or datetime.fromisoformat(found["expires_at"]) <= now():
            raise INVITATION_INVALID()
        return dict(found)

    async def accept_invitation(self, token: str, password: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The referent account (and the invitation, to appoint the referent to its departments)."""
        invitation = await self.invitation(token)
        email = (await self.vault.open(Sealed(**invitation["email"])) or {}).get("email")
        if email is None:
            raise INVITATION_INVALID()
        account = await self.create(
            email, password, "referent", scope=domain.Scope(departments=tuple(invitation["departments"]))
        )
        await self.documents.put(INVITATIONS, domain.digest(token), {**invitation, "used": True})
        await self.vault.forget(domain.digest(token))
        return account, invitation


def reset_key(token: str) -> str:
    """The key a reset link's token is sealed under: shredded once the link has served."""
    return f"reset-{domain.digest(token)}"
