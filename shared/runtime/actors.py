"""Who is calling: the gateway authenticates people and passes the acting user to services.

Every service route is internal: it answers only callers holding the internal token (the gateway,
in process or over the network), checked once for the whole router by `internal_caller`. Services
trust the identity and role in the actor headers but never the scope: each service checks scope
against its own data (a manager against the organisation's managers, a referent against the
departments it was appointed to).
"""

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from shared.events import Actor, Role
from shared.runtime.problems import Problem

ROLES: tuple[Role, ...] = ("volunteer", "manager", "referent", "admin")


UNAUTHENTICATED = Problem(401, "unauthenticated", "Vous devez être connecté.")


def internal_caller(request: Request, x_internal_token: Annotated[str | None, Header()] = None) -> None:
    """FastAPI dependency of every internal router: 401 unless the caller holds the internal token."""
    expected = request.app.state.runtime.settings.internal_token
    if not expected or not hmac.compare_digest((x_internal_token or "").encode(), expected.encode()):
        raise UNAUTHENTICATED()


def acting_user(
    x_actor_id: Annotated[str | None, Header()] = None,
    x_actor_role: Annotated[str | None, Header()] = None,
) -> Actor:
    """FastAPI dependency: the acting user the gateway relays, or 401 when the request carries none."""
    if not x_actor_id or x_actor_role not in ROLES:
        raise UNAUTHENTICATED()
    return Actor(id=x_actor_id, role=x_actor_role)


def optional_acting_user(
    x_actor_id: Annotated[str | None, Header()] = None,
    x_actor_role: Annotated[str | None, Header()] = None,
) -> Actor | None:
    """FastAPI dependency: the acting user, or None for an anonymous visitor."""
    if not x_actor_id and not x_actor_role:
        return None
    return acting_user(x_actor_id, x_actor_role)


ActingUser = Annotated[Actor, Depends(acting_user)]
Visitor = Annotated[Actor | None, Depends(optional_acting_user)]


def require_role(actor: Actor, *roles: Role) -> None:
    """403 unless the actor has one of `roles`."""
    if actor.role not in roles:
        raise Problem(403, "forbidden", "Vous n’avez pas le droit de faire cette action.")


def actor_headers(actor: Actor, internal_token: str | None = None) -> dict[str, str]:
    """The headers a trusted caller (the gateway, a test) sends on behalf of `actor`."""
    headers = {"x-actor-id": actor.id, "x-actor-role": actor.role}
    if internal_token:
        headers["x-internal-token"] = internal_token
    return headers
