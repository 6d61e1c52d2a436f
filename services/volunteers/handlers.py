"""Volunteers application layer: sign-up, profile, applications and waitlist, GDPR export and erasure.

Who may act is checked here, with `shared.access`: a volunteer acts on their own profile and applications,
the managers of a mission's organisation decide on its applications, an admin reads and erases profiles.
"""

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from functools import partial
from typing import Any

from services.volunteers import domain, projections
from services.volunteers.projections import APPLICATIONS, EMAILS, MISSIONS, VOLUNTEERS, WAITLIST
from shared import access, geo
from shared.contracts.volunteers import (
    CLEAR_FIELDS,
    PERSONAL_FIELDS,
    ApplicantContact,
    ApplicantFirstName,
    ApplicationCreated,
    ApplicationInput,
    ApplicationRefusal,
    ApplicationView,
    ApplicationWithdrawal,
    ErasedApplicant,
    MissionApplicationView,
    ProfileChanges,
    SignedUp,
    VolunteerExport,
    VolunteerProfile,
    VolunteerProfileView,
    WaitlistPlace,
    age_on,
    normalize_email,
    normalize_mobile,
    today,
)
from shared.errors import Invalid, NotFound
from shared.events import Actor, Envelope, Event, VolunteerProfileUpdated, VolunteerRegistered, new_id
from shared.events.vocabulary import Sealed
from shared.events.volunteers import roster_stream
from shared.runtime.app import ServiceContext
from shared.runtime.ports import ConcurrencyError, DocumentStore, DuplicateKeyError, EventStore, StreamBusy
from shared.runtime.streams import append_events, decide_and_append, load_stream
from shared.runtime.vault import Vault

ROSTER_ATTEMPTS = 40  # under a burst of decisions on one mission each attempt lets one writer through
PERSONAL_CHANGES = ("first_name", "last_name", "phone", "health_risk")

MISSION_NOT_FOUND = NotFound("mission_not_found", "Cette mission est introuvable.")
INVALID_PHONE = Invalid(
    "invalid_volunteer",
    "Certaines informations sont invalides.",
    fields={"phone": "Indiquez un numéro de mobile français (06 ou 07)."},
)

RosterDecision = Callable[[domain.Roster], Awaitable[list[Event]]]


class VolunteersHandlers:
    """Built once at start (the service's composition root), shared by the routes and the consumers."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.store: EventStore = ctx.store
        self.documents: DocumentStore = ctx.documents
        self.settings = ctx.settings
        self.vault = Vault(ctx.keys)

    def email_key(self, email: str) -> str:
        """The e-mail index key: an HMAC, so the index lists no address."""
        pepper = self.settings.personal_data_pepper.encode()
        return hmac.new(pepper, normalize_email(email).encode(), hashlib.sha256).hexdigest()

    # ---- sign-up and profile ----

    async def sign_up(self, profile: VolunteerProfile) -> tuple[SignedUp, bool]:
        """Register a volunteer, or find the one with this e-mail: (the volunteer, created)."""
        area = geo.postal_area(profile.postal_code)  # a known postal code: the profile was validated
        personal = {
            **profile.model_dump(include=set(PERSONAL_FIELDS)),
            "email": normalize_email(profile.email),
            "phone": normalize_mobile(profile.phone),
        }
        volunteer_id, created = new_id(), True
        key = self.email_key(profile.email)
        try:  # the unique index claim makes two identical sign-ups at once one volunteer
            await self.documents.insert(EMAILS, key, {"volunteer_id": volunteer_id})
        except DuplicateKeyError:
            claimed = await self.documents.get(EMAILS, key)
            if claimed is None:  # its holder was erased meanwhile: the address is free again
                return await self.sign_up(profile)
            volunteer_id, created = claimed["volunteer_id"], False
        signed_up = SignedUp(volunteer_id=volunteer_id, department=area.department)
        _, version = await load_stream(self.store, volunteer_id)
        if version:
            return signed_up, False
        age = age_on(profile.birth_date, today())
        registered = VolunteerRegistered(
            volunteer_id=volunteer_id,
            personal=await self.vault.seal(volunteer_id, personal),
            postal_code=area.postal_code,
            department=area.department,
            age_bracket=domain.age_bracket(age),
            onsite_restricted=age >= domain.CRISIS_AGE or profile.health_risk,
            **profile.model_dump(include=set(CLEAR_FIELDS)),
        )
        try:
            await append_events(
                self.store, volunteer_id, 0, [registered], actor=Actor(id=volunteer_id, role="volunteer")
            )
        except StreamBusy:
            raise  # an earlier try died between its two writes: nothing is registered yet, come back later
        except ConcurrencyError:
            pass  # the same sign-up, completed by a concurrent request (or a retry after a crash)
        return signed_up, created

    async def volunteer(self, volunteer_id: str) -> tuple[domain.Volunteer, int]:
        events, version = await load_stream(self.store, volunteer_id)
        volunteer = domain.Volunteer.replay(volunteer_id, events)
        volunteer.require_active()
        return volunteer, version

    async def personal(self, volunteer: domain.Volunteer) -> dict[str, Any]:
        opened = await self.vault.open(volunteer.personal)
        if opened is None:
            raise domain.VOLUNTEER_NOT_FOUND()
        return opened

    async def profile(self, volunteer_id: str, actor: Actor) -> VolunteerProfileView:
        access.require_self(actor, volunteer_id, admin_too=True)
        return await self._profile(volunteer_id)

    async def _profile(self, volunteer_id: str) -> VolunteerProfileView:
        volunteer, _ = await self.volunteer(volunteer_id)
        clear = await self.documents.get(VOLUNTEERS, volunteer_id) or {}
        return VolunteerProfileView.model_validate({**clear, **await self.personal(volunteer), "id": volunteer_id})

    async def update_profile(self, volunteer_id: str, changes: ProfileChanges, actor: Actor) -> None:
        access.require_self(actor, volunteer_id)
        area = geo.postal_area_or_refusal(changes.postal_code) if changes.postal_code else None
        personal_changes = changes.model_dump(include=set(PERSONAL_CHANGES), exclude_none=True)
        volunteer, version = await self.volunteer(volunteer_id)
        updated: dict[str, Any] = changes.model_dump(include=set(CLEAR_FIELDS), exclude_none=True)
        if personal_changes:
            personal = {**await self.personal(volunteer), **personal_changes}
            if "phone" in personal_changes:
                phone = normalize_mobile(personal_changes["phone"])
                if phone is None:
                    raise INVALID_PHONE()
                personal["phone"] = phone
            updated["personal"] = await self.vault.seal(volunteer_id, personal)
            birth = date.fromisoformat(str(personal["birth_date"]))
            updated["onsite_restricted"] = age_on(birth, today()) >= domain.CRISIS_AGE or personal["health_risk"]
        if area is not None:
            updated |= {"postal_code": area.postal_code, "department": area.department}
        if updated:
            event = VolunteerProfileUpdated(volunteer_id=volunteer_id, **updated)
            await append_events(self.store, volunteer_id, version, [event], actor=actor)

    async def candidate(self, volunteer_id: str) -> domain.Candidate:
        volunteer, _ = await self.volunteer(volunteer_id)
        personal = await self.personal(volunteer)
        birth = date.fromisoformat(personal["birth_date"])
        return domain.Candidate(volunteer_id, age_on(birth, today()), bool(personal["health_risk"]))

    # ---- applications and waitlist ----

    async def mission(self, mission_id: str) -> domain.OpenMission:
        found = await self.documents.get(MISSIONS, mission_id)
        if found is None or "places" not in found:
            raise MISSION_NOT_FOUND()
        return domain.OpenMission(
            mission_id,
            found["organization_id"],
            found["status"],
            found["places"],
            found["remote"],
            found["open_to_minors"],
        )

    async def managed_mission(self, mission_id: str, actor: Actor) -> domain.OpenMission:
        """The mission, for the managers of its organisation (and admins): they decide, referents do not."""
        mission = await self.mission(mission_id)
        access.require_manager(actor, await projections.manager_ids(self.documents, mission.organization_id))
        return mission

    async def apply(
        self, mission_id: str, application: ApplicationInput, actor: Actor, *, request_id: str | None = None
    ) -> ApplicationCreated:
        """`request_id`: the gateway's request carrying the application, which names it, so that a request
        carried out twice applies once."""
        access.require_role(actor, "volunteer")
        mission, candidate = await self.mission(mission_id), await self.candidate(actor.id)
        pending = await self.documents.count(APPLICATIONS, {"volunteer_id": actor.id, "status": "pending"})
        message = application.message
        sealed = await self.vault.seal(actor.id, {"message": message}) if message else None
        application_id = request_id or new_id()
        max_pending, crisis = self.settings.max_pending_applications, self.settings.crisis_mode

        async def decide(roster: domain.Roster) -> list[Event]:
            return domain.apply_to(roster, mission, candidate, application_id, sealed, pending, max_pending, crisis)

        await self.decide_roster(mission_id, decide, actor)
        return ApplicationCreated(application_id=application_id, status="pending")

    async def accept(self, mission_id: str, application_id: str, actor: Actor) -> None:
        mission = await self.managed_mission(mission_id, actor)

        async def decide(roster: domain.Roster) -> list[Event]:
            return domain.accept(roster, mission, application_id)

        await self.decide_roster(mission_id, decide, actor)

    async def refuse(self, mission_id: str, application_id: str, refusal: ApplicationRefusal, actor: Actor) -> None:
        mission = await self.managed_mission(mission_id, actor)
        await self.decide_roster(
            mission_id,
            self._then_promote(
                mission,
                lambda roster: domain.refuse(roster, mission, application_id, refusal.reason, refusal.comment),
            ),
            actor,
        )

    async def withdraw(
        self, mission_id: str, application_id: str, withdrawal: ApplicationWithdrawal, actor: Actor
    ) -> None:
        access.require_role(actor, "volunteer")
        mission = await self.mission(mission_id)
        await self.decide_roster(
            mission_id,
            self._then_promote(
                mission,
                lambda roster: domain.withdraw(
                    roster, mission, application_id, actor.id, withdrawal.reason, withdrawal.comment
                ),
            ),
            actor,
        )

    async def join_waitlist(self, mission_id: str, actor: Actor) -> None:
        access.require_role(actor, "volunteer")
        mission, candidate = await self.mission(mission_id), await self.candidate(actor.id)

        async def decide(roster: domain.Roster) -> list[Event]:
            return domain.join_waitlist(roster, mission, candidate, self.settings.crisis_mode)

        await self.decide_roster(mission_id, decide, actor)

    async def leave_waitlist(self, mission_id: str, actor: Actor) -> None:
        access.require_role(actor, "volunteer")
        mission = await self.mission(mission_id)
        await self.decide_roster(
            mission_id,
            self._then_promote(mission, lambda roster: domain.leave_waitlist(roster, mission, actor.id)),
            actor,
        )

    async def close_roster(self, mission_id: str, why: domain.MissionEnd, cause: Envelope) -> None:
        mission = await self.mission(mission_id)

        async def decide(roster: domain.Roster) -> list[Event]:
            return domain.close_roster(roster, mission, why)

        await self.decide_roster(mission_id, decide, cause=cause)

    def _then_promote(
        self, mission: domain.OpenMission, command: Callable[[domain.Roster], list[Event]]
    ) -> RosterDecision:
        """The command, then the promotion of the first eligible waitlisted volunteer if it freed a place."""

        async def decide(roster: domain.Roster) -> list[Event]:
            events = command(roster)
            after = roster
            for event in events:
                after = after.apply(event)
            candidates = {}
            for volunteer_id in after.waitlist:
                try:
                    candidates[volunteer_id] = await self.candidate(volunteer_id)
                except NotFound:
                    continue  # erased meanwhile
            return events + domain.promote(after, mission, candidates, self.settings.crisis_mode, new_id())

        return decide

    async def decide_roster(
        self,
        mission_id: str,
        decide: RosterDecision,
        actor: Actor | None = None,
        *,
        cause: Envelope | None = None,
    ) -> list[Event]:
        """Load the mission's roster, decide, append; a concurrent write to the roster retries."""

        async def decided(history: list[Event]) -> list[Event]:
            return await decide(domain.Roster.replay(mission_id, history))

        return await decide_and_append(
            self.store,
            roster_stream(mission_id),
            decided,
            actor=actor,
            cause=cause,
            attempts=ROSTER_ATTEMPTS,
            jitter_s=0.002,
        )

    async def readable(self, application: dict[str, Any]) -> ApplicationView:
        """An application as people read it: its message opened (gone once its author is erased)."""
        sealed = application.get("message")
        opened = await self.vault.open(Sealed(**sealed)) if sealed else None
        return ApplicationView.model_validate({**application, "message": (opened or {}).get("message")})

    async def applications_of(self, volunteer_id: str, actor: Actor) -> list[ApplicationView]:
        """The volunteer's applications, newest first."""
        access.require_self(actor, volunteer_id)
        return await self._applications_of(volunteer_id)

    async def _applications_of(self, volunteer_id: str, *, newest_first: bool = True) -> list[ApplicationView]:
        found = await self.documents.find(
            APPLICATIONS, {"volunteer_id": volunteer_id}, sort=[("applied_at", -1 if newest_first else 1)], limit=500
        )
        return [await self.readable(application) for application in found]

    async def mission_applications(self, mission_id: str, actor: Actor) -> list[MissionApplicationView]:
        """The mission's applications for its managers, with first names; contact details once accepted."""
        await self.managed_mission(mission_id, actor)
        listed = []
        for application in await self.documents.find(
            APPLICATIONS, {"mission_id": mission_id}, sort=[("applied_at", 1)]
        ):
            view = await self.readable(application)
            listed.append(
                MissionApplicationView(**view.model_dump(), volunteer=await self.applicant(view.volunteer_id, view))
            )
        return listed

    async def applicant(
        self, volunteer_id: str, application: ApplicationView
    ) -> ApplicantContact | ApplicantFirstName | ErasedApplicant:
        """Who applied, as the mission's managers see them."""
        known = await self.documents.get(VOLUNTEERS, volunteer_id) or {}
        if known.get("erased"):  # the volunteer erased their data: only the application's facts stay
            return ErasedApplicant(erased=True)
        try:
            profile = await self._profile(volunteer_id)
        except NotFound:
            return ErasedApplicant(erased=True)
        if application.status == "accepted":
            return ApplicantContact(
                first_name=profile.first_name, last_name=profile.last_name, email=profile.email, phone=profile.phone
            )
        return ApplicantFirstName(first_name=profile.first_name)

    # ---- GDPR ----

    async def export(self, volunteer_id: str, actor: Actor) -> VolunteerExport:
        """Everything the platform holds about a volunteer, readable."""
        access.require_self(actor, volunteer_id)
        profile = await self._profile(volunteer_id)
        applications = await self._applications_of(volunteer_id, newest_first=False)
        waitlists = await self.documents.find(WAITLIST, {"volunteer_id": volunteer_id, "active": True})
        return VolunteerExport(
            exported_at=datetime.now(UTC),
            profile=profile,
            applications=applications,
            waitlists=[WaitlistPlace(mission_id=w["mission_id"], since=w.get("since")) for w in waitlists],
        )

    async def erase(self, volunteer_id: str, actor: Actor) -> None:
        """Cancel live applications, leave waitlists, record the erasure, then shred the key."""
        access.require_self(actor, volunteer_id, admin_too=True)
        volunteer, version = await self.volunteer(volunteer_id)
        personal = await self.personal(volunteer)
        missions = {
            a["mission_id"]
            for a in await self.documents.find(
                APPLICATIONS, {"volunteer_id": volunteer_id, "status": {"$in": ["pending", "accepted"]}}
            )
        }
        missions |= {
            w["mission_id"] for w in await self.documents.find(WAITLIST, {"volunteer_id": volunteer_id, "active": True})
        }
        for mission_id in sorted(missions):
            mission = await self.mission(mission_id)
            await self.decide_roster(
                mission_id,
                self._then_promote(mission, partial(domain.erase_from, mission=mission, volunteer_id=volunteer_id)),
                actor,
            )
        await append_events(self.store, volunteer_id, version, domain.erase_volunteer(volunteer), actor=actor)
        await self.vault.forget(volunteer_id)
        await self.documents.delete(EMAILS, self.email_key(personal["email"]))
