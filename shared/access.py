"""Who may act on what: pure rules over the acting user and the resource, applied by the handlers.

An admin may do what a manager or a referent may; a manager acts on their organisations only, a
referent on their departments only, a volunteer on their own profile only. Each refusal has one
code and one message, whatever service refuses.
"""

from collections.abc import Collection

from shared.errors import Forbidden
from shared.events import Actor, Role

ROLE_NOT_ALLOWED = Forbidden("role_not_allowed", "Votre rôle ne permet pas cette action.")
NOT_YOUR_ORGANIZATION = Forbidden("not_your_organization", "Vous ne gérez pas cette organisation.")
NOT_YOUR_DEPARTMENT = Forbidden("not_your_department", "Vous n’êtes pas référent de ce département.")
NOT_YOUR_PROFILE = Forbidden("not_your_profile", "Vous n’avez accès qu’à votre propre profil.")
NOT_YOURS = Forbidden("forbidden", "Vous n’avez pas accès à cette ressource.")


def require_role(actor: Actor, *roles: Role) -> None:
    """The actor has one of `roles`."""
    if actor.role not in roles:
        raise ROLE_NOT_ALLOWED()


def manages(actor: Actor, manager_ids: Collection[str]) -> bool:
    """The actor is one of the organisation's managers, or an admin."""
    return actor.role == "admin" or (actor.role == "manager" and actor.id in manager_ids)


def refers(actor: Actor, department: str, appointed: Collection[str]) -> bool:
    """The actor is a referent appointed to `department` (`appointed`: their departments), or an admin."""
    return actor.role == "admin" or (actor.role == "referent" and department in appointed)


def require_manager(actor: Actor, manager_ids: Collection[str]) -> None:
    if not manages(actor, manager_ids):
        raise NOT_YOUR_ORGANIZATION()


def require_referent(actor: Actor, department: str, appointed: Collection[str]) -> None:
    if not refers(actor, department, appointed):
        raise NOT_YOUR_DEPARTMENT()


def require_manager_or_referent(
    actor: Actor, manager_ids: Collection[str], department: str, appointed: Collection[str]
) -> None:
    """Managers of the organisation, referents of its department and admins may read it."""
    if not (manages(actor, manager_ids) or refers(actor, department, appointed)):
        raise NOT_YOURS()


def require_self(actor: Actor, person_id: str, *, admin_too: bool = False) -> None:
    """The actor is that volunteer (or, with `admin_too`, an admin)."""
    if not ((actor.role == "volunteer" and actor.id == person_id) or (admin_too and actor.role == "admin")):
        raise NOT_YOUR_PROFILE()
