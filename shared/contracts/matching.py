"""The public operations of the matching service, as the gateway relays them:
search, recommendations, invitations, territories."""

from shared.contracts import (
    MANAGERS,
    MODERATORS,
    UNTYPED,
    Operation,
    Untyped,
    roles,
)

OPERATIONS = [
    Operation(
        "GET",
        "/search/missions",
        "matching",
        "/matching/missions",
        None,
        "Search published missions around a place",
        response=UNTYPED,
        query=Untyped,
    ),
    Operation(
        "GET",
        "/volunteers/{volunteer_id}/recommendations",
        "matching",
        "/matching/volunteers/{volunteer_id}/missions",
        roles("volunteer", "admin"),
        "Missions recommended to a volunteer",
        response=list[UNTYPED],
        query=Untyped,
    ),
    Operation(
        "GET",
        "/missions/{mission_id}/suggested-volunteers",
        "matching",
        "/matching/missions/{mission_id}/volunteers",
        MANAGERS,
        "Volunteers suggested for a mission",
        response=list[UNTYPED],
        query=Untyped,
    ),
    Operation(
        "POST",
        "/missions/{mission_id}/invitations",
        "matching",
        "/matching/missions/{mission_id}/invitations",
        MANAGERS,
        "Invite a volunteer to apply",
        response=UNTYPED,
        body=Untyped,
        status=201,
    ),
    Operation(
        "GET",
        "/departments/{department}/territory",
        "matching",
        "/matching/territories/{department}",
        MODERATORS,
        "Supply and demand in the department",
        response=UNTYPED,
    ),
]
