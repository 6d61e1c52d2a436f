"""Volunteers application layer: sign-up, profile, applications and waitlist, GDPR export and erasure."""

import contextlib
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

from services.volunteers import domain
from services.volunteers.projections import APPLICATIONS, EMAILS, MISSIONS, ORGANIZATIONS, VOLUNTEERS, WAITLIST
from shared import geo
from shared.contracts.volunteers import age_on, normalize_email, normalize_mobile, today
from shared.events import Actor, Envelope, Event, VolunteerProfileUpdated, VolunteerRegistered, new_id
from shared.events.vocabulary import Sealed
from shared.events.volunteers import ApplicationRefusalReason, WithdrawalReason, roster_stream
from shared.runtime.app import ServiceContext
from shared.runtime.ports import ConcurrencyError, DuplicateKeyError
from shared.runtime.problems import Problem
from shared.runtime.streams import append_events, decide_and_append, load_stream
from shared.runtime.vault import Vault

PERSONAL_FIELDS = ("first_name", "last_name", "email", "phone", "birth_date", "health_risk")
ROSTER_ATTEMPTS = 40  # under a burst of decisions on one mission each attempt lets one writer through


class VolunteersHandlers:
    def __init__(self, ctx: ServiceContext) -> None:
        self.store, self.documents, self.settings = ctx.store, ctx.documents, ctx.settings
        self.vault = Vault(ctx.keys)

    def email_key(self, email: str) -> str:
        """The e-mail index key: an HMAC, so the index lists no address."""
        pepper = self.settings.personal_data_pepper.encode()
        return hmac.new(pepper, normalize_email(email).encode(), hashlib.sha256).hexdigest()

    # ---- sign-up and profile ----

    async def sign_up(self, personal: dict[str, Any], clear: dict[str, Any], area: geo.PostalArea) -> tuple[str, bool]:
        """Register a volunteer, or find the one with this e-mail: (volunteer id, created)."""
        personal = {
            **personal,
            "email": normalize_email(personal["email"]),
            "phone": normalize_mobile(personal["phone"]),
        }
        volunteer_id, created = new_id(), True
        try:  # the unique index claim makes two identical sign-ups at once one volunteer
            await self.documents.insert(EMAILS, self.email_key(personal["email"]), {"volunteer_id": volunteer_id})
        except DuplicateKeyError:
            volunteer_id, created = (
                (await self.documents.get(EMAILS, self.email_key(personal["email"])))["volunteer_id"],
                False,
            )
        _, version = await load_stream(self.store, volunteer_id)
        if version:
            return volunteer_id, False
        age = age_on(personal["birth_date"], today())
        registered = VolunteerRegistered(
            volunteer_id=volunteer_id,
            personal=await self.vault.seal(volunteer_id, personal),
            postal_code=area.postal_code,
            department=area.department,
            age_bracket=domain.age_bracket(age),
            onsite_restricted=age >= domain.CRISIS_AGE or personal["health_risk"],
            **clear,
        )
        # ConcurrencyError: the same sign-up, completed by a concurrent request (or a retry after a crash)
        with contextlib.suppress(ConcurrencyError):
            await append_events(
                self.store, volunteer_id, 0, [registered], actor=Actor(id=volunteer_id, role="volunteer")
            )
        return volunteer_id, created

    async def volunteer(self, volunteer_id: str) -> tuple[domain.Volunteer, int]:
        events, version = await load_stream(self.store, volunteer_id)
        volunteer = domain.Volunteer.replay(volunteer_id, events)
        volunteer.require_active()
        return volunteer, version

    async def personal(self, volunteer: domain.Volunteer) -> dict[str, Any]:
        opened = await self.vault.open(volunteer.personal)
        if opened is None:
            raise Problem(404, "volunteer_not_found", "Ce profil de bénévole est introuvable.")
        return opened

    async def profile(self, volunteer_id: str) -> dict[str, Any]:
        volunteer, _ = await self.volunteer(volunteer_id)
        clear = await self.documents.get(VOLUNTEERS, volunteer_id) or {}
        return {
            **{k: v for k, v in clear.items() if k != "version"},
            **await self.personal(volunteer),
            "id": volunteer_id,
        }

    async def update_profile(
        self,
        volunteer_id: str,
        personal_changes: dict[str, Any],
        clear: dict[str, Any],
        area: geo.PostalArea | None,
        actor: Actor,
    ) -> None:
        volunteer, version = await self.volunteer(volunteer_id)
        personal = await self.personal(volunteer)
        changes: dict[str, Any] = dict(clear)
        if personal_changes:
            personal = {**personal, **personal_changes}
            if "phone" in personal_changes:
                phone = normalize_mobile(personal_changes["phone"])
                if phone is None:
                    raise Problem(
                        422,
                        "invalid_volunteer",
                        "Certaines informations sont invalides.",
                        fields={"phone": "Indiquez un numéro de mobile français (06 ou 07)."},
                    )
                personal["phone"] = phone
            changes["personal"] = await self.vault.seal(volunteer_id, personal)
            birth = (
                date.fromisoformat(personal["birth_date"])
                if isinstance(personal["birth_date"], str)
                else personal["birth_date"]
            )
            changes["onsite_restricted"] = age_on(birth, today()) >= domain.CRISIS_AGE or personal["health_risk"]
        if area is not None:
            changes |= {"postal_code": area.postal_code, "department": area.department}
        if changes:
            event = VolunteerProfileUpdated(volunteer_id=volunteer_id, **changes)
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
            raise Problem(404, "mission_not_found", "Cette mission est introuvable.")
        return domain.OpenMission(
            mission_id,
            found["organization_id"],
            found["status"],
            found["places"],
            found["remote"],
            found["open_to_minors"],
        )

    async def require_manager(self, mission: domain.OpenMission, actor: Actor) -> None:
        """Only managers of the mission's organisation decide; referents and others do not."""
        organization = await self.documents.get(ORGANIZATIONS, mission.organization_id) or {"manager_ids": []}
        if actor.role != "admin" and actor.id not in organization["manager_ids"]:
            raise Problem(
                403, "not_your_mission", "Seuls les responsables de l’organisation décident des candidatures."
            )

    async def apply(self, mission_id: str, volunteer_id: str, message: str | None, actor: Actor) -> str:
        mission, candidate = await self.mission(mission_id), await self.candidate(volunteer_id)
        pending = await self.documents.count(APPLICATIONS, {"volunteer_id": volunteer_id, "status": "pending"})
        sealed = await self.vault.seal(volunteer_id, {"message": message}) if message else None
        application_id = new_id()
        max_pending, crisis = self.settings.max_pending_applications, self.settings.crisis_mode

        async def decide(roster: domain.Roster) -> list[Event]:
            return domain.apply_to(roster, mission, candidate, application_id, sealed, pending, max_pending, crisis)

        await self.decide_roster(mission_id, decide, actor)
        return application_id

    async def accept(self, mission_id: str, application_id: str, actor: Actor) -> None:
        mission = await self.mission(mission_id)
        await self.require_manager(mission, actor)

        async def decide(roster: domain.Roster) -> list[Event]:
            return domain.accept(roster, mission, application_id)

        await self.decide_roster(mission_id, decide, actor)

    async def refuse(
        self, mission_id: str, application_id: str, reason: ApplicationRefusalReason, comment: str | None, actor: Actor
    ) -> None:
        mission = await self.mission(mission_id)
        await self.require_manager(mission, actor)
        await self.decide_roster(
            mission_id,
            self._then_promote(mission, lambda roster: domain.refuse(roster, mission, application_id, reason, comment)),
            actor,
        )

    async def withdraw(
        self,
        mission_id: str,
        application_id: str,
        volunteer_id: str,
        reason: WithdrawalReason,
        comment: str | None,
        actor: Actor,
    ) -> None:
        mission = await self.mission(mission_id)
        await self.decide_roster(
            mission_id,
            self._then_promote(
                mission, lambda roster: domain.withdraw(roster, mission, application_id, volunteer_id, reason, comment)
            ),
            actor,
        )

    async def join_waitlist(self, mission_id: str, volunteer_id: str, actor: Actor) -> None:
        mission, candidate = await self.mission(mission_id), await self.candidate(volunteer_id)

        async def decide(roster: domain.Roster) -> list[Event]:
            return domain.join_waitlist(roster, mission, candidate, self.settings.crisis_mode)

        await self.decide_roster(mission_id, decide, actor)

    async def leave_waitlist(self, mission_id: str, volunteer_id: str, actor: Actor) -> None:
        mission = await self.mission(mission_id)
        await self.decide_roster(
            mission_id,
            self._then_promote(mission, lambda roster: domain.leave_waitlist(roster, mission, volunteer_id)),
            actor,
        )

    async def close_roster(self, mission_id: str, why: str, cause: Envelope) -> None:
        mission = await self.mission(mission_id)

        async def decide(roster: domain.Roster) -> list[Event]:
            return domain.close_roster(roster, mission, why)  # type: ignore[arg-type]

        await self.decide_roster(mission_id, decide, cause=cause)

    def _then_promote(self, mission: domain.OpenMission, command: Callable[[domain.Roster], list[Event]]):
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
                except Problem:
                    continue  # erased meanwhile
            return events + domain.promote(after, mission, candidates, self.settings.crisis_mode, new_id())

        return decide

    async def decide_roster(
        self,
        mission_id: str,
        decide: Callable[[domain.Roster], Awaitable[list[Event]]],
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

    async def readable(self, application: dict[str, Any]) -> dict[str, Any]:
        """An application as people read it: its message opened (gone once its author is erased)."""
        sealed = application.get("message")
        opened = await self.vault.open(Sealed(**sealed)) if sealed else None
        return {**{k: v for k, v in application.items() if k != "version"}, "message": (opened or {}).get("message")}

    async def applications_of(self, volunteer_id: str, *, newest_first: bool = True) -> list[dict[str, Any]]:
        found = await self.documents.find(
            APPLICATIONS, {"volunteer_id": volunteer_id}, sort=[("applied_at", -1 if newest_first else 1)], limit=500
        )
        return [await self.readable(application) for application in found]

    # ---- GDPR ----

    async def export(self, volunteer_id: str) -> dict[str, Any]:
        """Everything the platform holds about a volunteer, readable."""
        profile = await self.profile(volunteer_id)
        applications = await self.applications_of(volunteer_id, newest_first=False)
        waitlists = await self.documents.find(WAITLIST, {"volunteer_id": volunteer_id, "active": True})
        return {
            "exported_at": datetime.now(UTC).isoformat(),
            "profile": profile,
            "applications": applications,
            "waitlists": [{"mission_id": w["mission_id"], "since": w.get("since")} for w in waitlists],
        }

    async def erase(self, volunteer_id: str, actor: Actor) -> None:
        """Cancel live applications, leave waitlists, record the erasure, then shred the key."""
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
                self._then_promote(
                    mission, lambda roster, mission=mission: domain.erase_from(roster, mission, volunteer_id)
                ),
                actor,
            )
        await append_events(self.store, volunteer_id, version, domain.erase_volunteer(volunteer), actor=actor)
        await self.vault.forget(volunteer_id)
        await self.documents.delete(EMAILS, self.email_key(personal["email"]))
