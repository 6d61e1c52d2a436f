"""Who is calling: the gateway authenticates people and passes the acting user to services.

Services trust the identity and role in these headers (the gateway is their only client) but
never the scope: each service checks scope against its own data (a manager against the
organisation's managers, a referent against the departments it was appointed to).
"""

from typing import Annotated

from fastapi import Depends, Header

from shared.events import Actor, Role
from shared.runtime.problems import Problem

ROLES: tuple[Role, ...] = ("volunteer", "manager", "referent", "admin")


def acting_user(
    x_actor_id: Annotated[str | None, Header()] = None,
    x_actor_role: Annotated[str | None, Header()] = None,
) -> Actor:
    """FastAPI dependency: the acting user, or 401 when the request carries none."""
    if not x_actor_id or x_actor_role not in ROLES:
        raise Problem(401, "unauthenticated", "Vous devez être connecté.")
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


def actor_headers(actor: Actor) -> dict[str, str]:
    """The headers a trusted caller (the gateway, a test) sends on behalf of `actor`."""
    return {"x-actor-id": actor.id, "x-actor-role": actor.role}
