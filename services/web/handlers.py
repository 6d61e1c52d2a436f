"""The website's calls to the public API (/api/v1), one function per operation, answered with the contract's own
models: the site knows no other way into the platform (it proves the API complete)."""

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from shared.contracts.gateway import Accepted, Me, OrganizationRegistered, ReferentAccount, RequestStatus
from shared.contracts.matching import MissionSearch, MissionSearchPage, RecommendedMission
from shared.contracts.missions import DraftedMission, MissionView, OrganizationView
from shared.contracts.notifications import PreferencesView
from shared.contracts.volunteers import ApplicationView, MissionApplicationView, VolunteerProfileView
from shared.events.vocabulary import DOMAINS, Domain
from shared.web.gateway import expect
from shared.web.pages import PageNotFound, Visit

FIGURES_KEPT_S = 60.0  # the home page's figures are read at most once a minute per process


def segment(value: str) -> str:
    """A path parameter as the URL carries it."""
    return quote(value, safe="")


# ---- missions ----


@dataclass(frozen=True)
class Figures:
    """The figures of the moment on the home page, from the public search alone (nothing estimated)."""

    open_missions: int
    remote_missions: int
    by_domain: dict[Domain, int]


class FiguresKept:
    def __init__(self) -> None:
        self.figures: Figures | None = None
        self.read_at = 0.0


async def figures(visit: Visit) -> Figures:
    """Missions with a free place, in all, remote, and per domain."""
    kept = visit.runtime.held(FiguresKept, FiguresKept)
    if kept.figures is None or time.monotonic() - kept.read_at > FIGURES_KEPT_S:
        queries = [MissionSearch(per_page=1), MissionSearch(per_page=1, remote=True)]
        queries += [MissionSearch(per_page=1, domain=[domain]) for domain in DOMAINS]
        pages = await asyncio.gather(*(search(visit, query) for query in queries))
        kept.figures = Figures(
            open_missions=pages[0].total,
            remote_missions=pages[1].total,
            by_domain={domain: page.total for domain, page in zip(DOMAINS, pages[2:], strict=True)},
        )
        kept.read_at = time.monotonic()
    return kept.figures


async def search(visit: Visit, query: MissionSearch) -> MissionSearchPage:
    params = query.model_dump(mode="json", exclude_none=True)
    answer = expect(await visit.call("GET", "/search/missions", params=params))
    return MissionSearchPage.model_validate_json(answer.content)


async def mission(visit: Visit, mission_id: str) -> MissionView:
    """A published mission (or, for its managers and referents, one before publication); the 404 page otherwise."""
    answer = await visit.call("GET", f"/missions/{segment(mission_id)}")
    if answer.status_code in (404, 422):
        raise PageNotFound()
    return MissionView.model_validate_json(expect(answer).content)


# ---- sign-up, sessions ----


async def sign_up(visit: Visit, password: str, profile: dict[str, Any]) -> str:
    """The sign-up accepted for later (202): its request id, to follow."""
    answer = await visit.call("POST", "/volunteers", json={"password": password, "volunteer": profile})
    return Accepted.model_validate_json(expect(answer, 202).content).request_id


async def request_status(visit: Visit, request_id: str) -> RequestStatus:
    answer = await visit.call("GET", f"/requests/{segment(request_id)}")
    if answer.status_code == 404:
        raise PageNotFound()
    return RequestStatus.model_validate_json(expect(answer).content)


async def log_in(visit: Visit, email: str, password: str) -> dict[str, Any]:
    """The gateway's tokens (`Tokens`); Refused for wrong credentials or a locked account."""
    answer = await visit.call("POST", "/auth/login", json={"email": email, "password": password})
    tokens: dict[str, Any] = expect(answer).json()
    return tokens


async def log_out(visit: Visit) -> None:
    """The refresh token revoked: the session ends at the gateway too."""
    if visit.signed_in is not None:
        body = {"refresh_token": visit.signed_in.refresh_token}
        await visit.call("POST", "/auth/logout", as_visitor=False, json=body)


async def accept_invitation(visit: Visit, token: str, password: str) -> ReferentAccount:
    answer = await visit.call("POST", f"/referent-invitations/{segment(token)}/accept", json={"password": password})
    return ReferentAccount.model_validate_json(expect(answer, 201).content)


async def request_password_reset(visit: Visit, email: str) -> str:
    """The gateway's answer, alike for a known address and an unknown one."""
    answer = await visit.call("POST", "/auth/password-reset", json={"email": email})
    return str(expect(answer, 202).json()["detail"])


async def reset_password(visit: Visit, token: str, password: str) -> None:
    answer = await visit.call("POST", "/auth/password-reset/confirm", json={"token": token, "password": password})
    expect(answer, 204)


# ---- a volunteer's own ----


async def apply(visit: Visit, mission_id: str, message: str | None) -> str:
    """The application accepted for later (202): its request id, to follow."""
    body = {"message": message} if message else {}
    answer = await visit.call("POST", f"/missions/{segment(mission_id)}/applications", json=body)
    return Accepted.model_validate_json(expect(answer, 202).content).request_id


async def join_waitlist(visit: Visit, mission_id: str) -> None:
    expect(await visit.call("POST", f"/missions/{segment(mission_id)}/waitlist"), 204)


async def applications(visit: Visit, volunteer_id: str) -> list[ApplicationView]:
    answer = expect(await visit.call("GET", f"/volunteers/{segment(volunteer_id)}/applications"))
    return [ApplicationView.model_validate(item) for item in answer.json()]


async def withdraw(visit: Visit, mission_id: str, application_id: str, reason: str, comment: str | None) -> None:
    path = f"/missions/{segment(mission_id)}/applications/{segment(application_id)}/withdraw"
    body = {"reason": reason} | ({"comment": comment} if comment else {})
    expect(await visit.call("POST", path, json=body), 204)


async def profile(visit: Visit, volunteer_id: str) -> VolunteerProfileView:
    answer = expect(await visit.call("GET", f"/volunteers/{segment(volunteer_id)}"))
    return VolunteerProfileView.model_validate_json(answer.content)


async def change_profile(visit: Visit, volunteer_id: str, changes: dict[str, Any]) -> None:
    """Only the fields sent change (ProfileChanges); Refused with the fields at fault."""
    expect(await visit.call("PATCH", f"/volunteers/{segment(volunteer_id)}", json=changes), 204)


async def recommendations(visit: Visit, volunteer_id: str) -> list[RecommendedMission]:
    answer = await visit.call("GET", f"/volunteers/{segment(volunteer_id)}/recommendations", params={"limit": 3})
    if answer.status_code != 200:  # a profile not indexed yet: none to show, the page goes on
        return []
    return [RecommendedMission.model_validate(item) for item in answer.json()]


async def export(visit: Visit, volunteer_id: str) -> bytes:
    """Everything the platform holds about the volunteer, as the API gives it (JSON)."""
    return expect(await visit.call("GET", f"/volunteers/{segment(volunteer_id)}/export")).content


async def erase(visit: Visit, volunteer_id: str) -> None:
    expect(await visit.call("DELETE", f"/volunteers/{segment(volunteer_id)}"), 204)


async def preferences(visit: Visit) -> PreferencesView:
    return PreferencesView.model_validate_json(expect(await visit.call("GET", "/notifications/preferences")).content)


async def change_preferences(visit: Visit, change: dict[str, Any]) -> PreferencesView:
    answer = expect(await visit.call("PUT", "/notifications/preferences", json=change))
    return PreferencesView.model_validate_json(answer.content)


# ---- an organisation's managers ----


async def me(visit: Visit) -> Me:
    return Me.model_validate_json(expect(await visit.call("GET", "/auth/me")).content)


async def register_organization(
    visit: Visit, organization: dict[str, Any], account: dict[str, Any] | None
) -> OrganizationRegistered:
    """A new organisation, pending until a referent of its department decides; with `account`, its manager's
    account too (a signed-in manager adds one to theirs)."""
    body = {"organization": organization} | ({"account": account} if account else {})
    answer = await visit.call("POST", "/organizations", json=body, as_visitor=account is None)
    return OrganizationRegistered.model_validate_json(expect(answer, 201).content)


async def organization(visit: Visit, organization_id: str) -> OrganizationView:
    answer = expect(await visit.call("GET", f"/organizations/{segment(organization_id)}"))
    return OrganizationView.model_validate_json(answer.content)


async def organization_missions(visit: Visit, organization_id: str) -> list[MissionView]:
    answer = expect(await visit.call("GET", f"/organizations/{segment(organization_id)}/missions"))
    return [MissionView.model_validate(item) for item in answer.json()]


async def draft_mission(visit: Visit, organization_id: str, mission: dict[str, Any]) -> str:
    answer = await visit.call("POST", f"/organizations/{segment(organization_id)}/missions", json=mission)
    return DraftedMission.model_validate_json(expect(answer, 201).content).mission_id


async def submit_mission(visit: Visit, mission_id: str) -> None:
    expect(await visit.call("POST", f"/missions/{segment(mission_id)}/submit"), 204)


async def edit_mission(visit: Visit, mission_id: str, mission: dict[str, Any]) -> None:
    """A draft, or a mission whose changes a referent requested, rewritten whole (MissionInput)."""
    expect(await visit.call("PUT", f"/missions/{segment(mission_id)}", json=mission), 204)


async def close_mission(visit: Visit, mission_id: str) -> None:
    expect(await visit.call("POST", f"/missions/{segment(mission_id)}/close"), 204)


async def cancel_mission(visit: Visit, mission_id: str, reason: str) -> None:
    expect(await visit.call("POST", f"/missions/{segment(mission_id)}/cancel", json={"reason": reason}), 204)


async def mission_applications(visit: Visit, mission_id: str) -> list[MissionApplicationView]:
    answer = expect(await visit.call("GET", f"/missions/{segment(mission_id)}/applications"))
    return [MissionApplicationView.model_validate(item) for item in answer.json()]


async def accept_application(visit: Visit, mission_id: str, application_id: str) -> None:
    path = f"/missions/{segment(mission_id)}/applications/{segment(application_id)}/accept"
    expect(await visit.call("POST", path), 204)


async def refuse_application(
    visit: Visit, mission_id: str, application_id: str, reason: str, comment: str | None
) -> None:
    path = f"/missions/{segment(mission_id)}/applications/{segment(application_id)}/refuse"
    body = {"reason": reason} | ({"comment": comment} if comment else {})
    expect(await visit.call("POST", path, json=body), 204)
