"""Accounts and sessions, referent invitations, organisation registrations and erasures: the routes where
the gateway's own accounts take part."""

import json
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, BackgroundTasks, Request, Response

from services.gateway.api.edge import (
    UNAUTHENTICATED,
    AccountsOf,
    AdminActing,
    AnyoneActing,
    VolunteerOrAdminActing,
    idempotent,
    limit,
    operation_id,
    relay,
    services,
)
from services.gateway.domain import check_password
from services.gateway.handlers import EMAIL_TAKEN
from shared.access import ROLE_NOT_ALLOWED
from shared.contracts.gateway import (
    Credentials,
    Invitation,
    InvitationAcceptance,
    InvitationSent,
    Me,
    OrganizationRegistered,
    OrganizationRegistration,
    PasswordReset,
    PasswordResetRequest,
    PasswordResetSent,
    ReferentAccount,
    RefreshInput,
    Tokens,
)
from shared.events import Actor
from shared.runtime.problems import Problem

router = APIRouter(generate_unique_id_function=operation_id)
APPOINTMENT_FAILED = Problem(
    502, "appointment_failed", "Le compte est créé mais la nomination a échoué : contactez un administrateur."
)


@router.post("/auth/login", tags=["auth"], response_model=Tokens)
async def login(body: Credentials, request: Request, accounts: AccountsOf) -> dict[str, Any]:
    limit(request, None, "login", email=body.email)
    return await accounts.login(body.email, body.password)


@router.post("/auth/refresh", tags=["auth"], response_model=Tokens)
async def refresh(body: RefreshInput, request: Request, accounts: AccountsOf) -> dict[str, Any]:
    limit(request, None, "login")
    return await accounts.refresh(body.refresh_token)


@router.post("/auth/logout", status_code=204, tags=["auth"])
async def logout(body: RefreshInput, accounts: AccountsOf) -> None:
    await accounts.logout(body.refresh_token)


@router.post("/auth/password-reset", status_code=202, tags=["auth"], response_model=PasswordResetSent)
async def request_password_reset(
    body: PasswordResetRequest, request: Request, accounts: AccountsOf, background: BackgroundTasks
) -> dict[str, Any]:
    """A forgotten password: a single-use link (valid an hour) goes to the address if an account has it. The answer
    is the same, and as fast, for a known address and an unknown one: the link is prepared after it."""
    limit(request, None, "password_reset", email=body.email)
    background.add_task(accounts.request_password_reset, body.email)
    return {
        "status": "sent_if_known",
        "detail": "Si un compte existe avec cette adresse, un lien pour choisir un nouveau mot de passe vient de "
        "lui être envoyé. Il est valable une heure.",
    }


@router.post("/auth/password-reset/confirm", status_code=204, tags=["auth"])
async def reset_password(body: PasswordReset, request: Request, accounts: AccountsOf) -> None:
    """The new password, with the link's token: the link is used up and the account's other sessions end."""
    limit(request, None, "password_reset")
    await accounts.reset_password(body.token, body.password)


@router.get("/auth/me", tags=["auth"], response_model=Me)
async def me(accounts: AccountsOf, actor: AnyoneActing) -> dict[str, Any]:
    """Who the access token names: the account's role and, for a manager, its organisations (the web front
    finds a manager's space with it)."""
    account = await accounts.account(actor.id)
    if account is None:  # closed since the token was issued
        raise UNAUTHENTICATED()
    return {"account_id": actor.id, "role": account["role"], "organizations": account["organizations"]}


@router.post("/organizations", status_code=201, tags=["missions"], response_model=OrganizationRegistered)
async def register_organization(body: OrganizationRegistration, request: Request, accounts: AccountsOf) -> Response:
    """Registers an organisation; with `account`, opens its manager's account too. The whole request is
    checked first, and the account is announced (welcome e-mail) only once the organisation is registered:
    a refused registration leaves nothing behind."""
    limit(request, None, "registration", email=body.account.email if body.account else None)
    actor = accounts.authenticate(request.headers.get("authorization"))
    if body.account is None and actor is None:
        raise UNAUTHENTICATED()
    if body.account is None and actor is not None and actor.role != "manager":
        raise ROLE_NOT_ALLOWED()
    if body.account is not None:
        check_password(body.account.password, email=body.account.email)
        if await accounts.by_email(body.account.email) is not None:
            raise EMAIL_TAKEN()

    async def produce() -> Response:
        account = None
        manager = actor
        if body.account is not None:
            account = await accounts.create(body.account.email, body.account.password, "manager", announce=False)
            manager = Actor(id=account["id"], role="manager")
        assert manager is not None  # a new account, or the signed-in manager (checked above)
        answer = await services(request).call(
            "missions", "POST", "/missions/organizations", manager, json=body.organization.model_dump(mode="json")
        )
        if answer.status_code >= 300:
            if account is not None:
                await accounts.delete(account["id"])
            return relay(answer)
        await accounts.add_organization(manager.id, answer.json()["organization_id"])
        if account is not None:
            await accounts.announce(account)
        return Response(
            json.dumps({**answer.json(), "account_id": manager.id}), status_code=201, media_type="application/json"
        )

    return await idempotent(request, actor, produce)


@router.delete("/volunteers/{volunteer_id}", status_code=204, tags=["volunteers"])
async def erase_volunteer(
    volunteer_id: str, request: Request, accounts: AccountsOf, actor: VolunteerOrAdminActing
) -> Response:
    """GDPR erasure, by the volunteer or an admin: applications cancelled, personal data shredded
    everywhere (crypto-shredding), the account closed."""
    answer = await services(request).call("volunteers", "DELETE", f"/volunteers/{quote(volunteer_id, safe='')}", actor)
    if answer.status_code == 204:
        await accounts.delete(volunteer_id)
    return relay(answer)


@router.post("/referent-invitations", status_code=201, tags=["moderation"], response_model=InvitationSent)
async def invite_referent(
    body: Invitation, request: Request, accounts: AccountsOf, actor: AdminActing
) -> dict[str, Any]:
    """Admins invite a referent by e-mail; the link with its token travels only in the e-mail
    (notifications service), never in this answer."""
    return {
        "invitation_id": await accounts.invite(body.email, body.departments, actor),
        "departments": body.departments,
        "expires_in": request.app.state.runtime.settings.invitation_ttl_s,
    }


@router.post(
    "/referent-invitations/{token}/accept", status_code=201, tags=["moderation"], response_model=ReferentAccount
)
async def accept_invitation(
    token: str, body: InvitationAcceptance, request: Request, accounts: AccountsOf
) -> dict[str, Any]:
    """The invited referent sets a password; the account is appointed to the invitation's departments."""
    limit(request, None, "registration")
    account, invitation = await accounts.accept_invitation(token, body.password)
    admin = Actor(id=invitation["invited_by"], role="admin")
    answer = await services(request).call(
        "moderation",
        "PUT",
        f"/moderation/referents/{account['id']}",
        admin,
        json={"departments": invitation["departments"]},
    )
    if answer.status_code >= 300:
        raise APPOINTMENT_FAILED()
    return {"account_id": account["id"], "departments": invitation["departments"]}
