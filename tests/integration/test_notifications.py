"""The notifications service on both backends, against a real SMTP server (aiosmtpd): every message with its
trigger and recipients, redelivery, throttling and digests, opt-outs, the scheduler's periods, SMTP
failures, referents' broadcasts, erased volunteers."""

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from prometheus_client import REGISTRY

from services.notifications import service as notifications_service
from services.notifications.consumers import CONSUMED
from services.notifications.domain import delivery_key
from services.notifications.handlers import DELIVERIES, Notifications
from shared.events import (
    AccountOpened,
    Actor,
    ApplicationAccepted,
    ApplicationCancelled,
    ApplicationReceived,
    ApplicationRefused,
    ApplicationWithdrawn,
    Envelope,
    Event,
    MissionCancelled,
    MissionClosed,
    MissionDrafted,
    MissionEdited,
    MissionFilled,
    MissionModerated,
    MissionPublished,
    MissionReopened,
    MissionSubmitted,
    MissionUnpublished,
    OrganizationApproved,
    OrganizationRegistered,
    OrganizationRejected,
    PasswordResetRequested,
    ReferentAppointed,
    ReferentInvited,
    ReferentRevoked,
    TerritoryImbalanceDetected,
    VolunteerErased,
    VolunteerIdle,
    VolunteerInvited,
    VolunteerProfileUpdated,
    VolunteerRegistered,
    catalog,
)
from shared.events.vocabulary import MissionContent, Place, SafetyConditions
from shared.runtime.app import create_app
from shared.runtime.backend import open_bus, open_storage
from shared.runtime.ports import OutgoingMessage
from shared.runtime.vault import Vault
from tests.conftest import ROOT, env_of, eventually, free_port, service_headers
from tests.integration.mailserver import MailServer, RunningMailServer

MANAGER, REFERENT, VOLUNTEER = "manager-1", "referent-1", "volunteer-1"
MANAGER_EMAIL, REFERENT_EMAIL, VOLUNTEER_EMAIL = (
    "gestion@secours56.fr",
    "referent@morbihan.gouv.fr",
    "camille@example.fr",
)
LINK_SECRET = "test-link-secret"
PUBLIC_URL = "https://civique.test"


def content(title: str = "Distribution alimentaire", places: int = 8, end: date | None = None) -> MissionContent:
    return MissionContent(
        title=title,
        description="Distribuer des colis aux familles.",
        domain="food_and_emergency_aid",
        remote=False,
        department="56",
        place=Place(postal_code="56000", department="56", commune="Vannes"),
        places=places,
        end_date=end,
        safety=SafetyConditions(distancing=True, protective_equipment=True, supervision=True),
    )


def later(days: int) -> datetime:
    """A weekday at 10:00 in Paris, `days` or a little more from now (reminders go from 8:00 on weekdays)."""
    moment = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=days)
    while moment.weekday() >= 5:
        moment += timedelta(days=1)
    return moment


class World:
    """The notifications service alone, told by the bus what the other services would publish."""

    def __init__(self, app, client: httpx.AsyncClient, smtp: MailServer) -> None:
        self.app, self.client, self.smtp = app, client, smtp
        self.versions: dict[str, int] = {}
        self.said: list[Envelope] = []

    @property
    def ctx(self):
        return self.app.state.runtime.context("notifications")

    @property
    def notifications(self) -> Notifications:
        return self.ctx.component(Notifications)

    async def seal(self, owner: str, data: dict):
        return await Vault(self.ctx.keys).seal(owner, data)

    async def say(self, *events: Event) -> None:
        envelopes = []
        for event in events:
            stream = event.stream_id()
            self.versions[stream] = self.versions.get(stream, 0) + 1
            envelopes.append(event.envelope(self.versions[stream]))
        self.said += envelopes
        await self.app.state.runtime.bus.publish([OutgoingMessage.of(e) for e in envelopes])

    async def known(self, collection: str, doc_id: str, field: str = "id") -> None:
        async def there() -> bool:
            return field in (await self.ctx.documents.get(collection, doc_id) or {})

        await eventually(there, what=f"{collection}/{doc_id}.{field} projected")

    async def mail(self, to: str, subject_part: str, *, count: int = 1):
        async def arrived() -> bool:
            return len(self.smtp.to(to, subject_part)) >= count

        await eventually(arrived, what=f"{count} e-mail(s) to {to} about {subject_part!r}")
        return self.smtp.to(to, subject_part)[-1]

    async def settled(self) -> None:
        """Every event said was handled, and nothing is queued: every e-mail was sent, held, or given up."""

        async def done() -> bool:
            (mail,) = [
                r for r in self.app.state.runtime.running["notifications"].runners if r.group == "notifications.mail"
            ]
            lag = await self.ctx.bus.lag(mail.group, mail.subscriber.topics)
            return not any(lag.values()) and await self.ctx.documents.count(DELIVERIES, {"status": "queued"}) == 0

        await eventually(done, what="the delivery log to settle")

    async def deliveries(self, **where) -> list[dict]:
        return await self.ctx.documents.find(DELIVERIES, where)

    async def call(
        self, method: str, path: str, actor: Actor | None = None, *, headers: dict | None = None, **kwargs
    ) -> httpx.Response:
        headers = {**service_headers(self.app, actor), **(headers or {})}
        return await self.client.request(method, path, headers=headers, **kwargs)


@pytest.fixture
def smtp():
    with RunningMailServer() as server:
        yield server


@pytest.fixture
async def world(settings, smtp):
    overrides = {
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp.port,
        "link_secret": LINK_SECRET,
        "public_url": PUBLIC_URL,
        "mail_send_interval_s": 0.02,
        "mail_retry_base_s": 0.05,
        "schedule_interval_s": 3600,
        "mail_hourly_limit": 50,
    }
    app = create_app(settings.model_copy(update=overrides), [notifications_service])
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://civique.test") as client,
    ):
        w = World(app, client, smtp)
        await w.say(
            AccountOpened(
                account_id=REFERENT, role="referent", email=await w.seal(REFERENT, {"email": REFERENT_EMAIL})
            ),
            ReferentAppointed(referent_id=REFERENT, departments=["56"]),
        )
        await w.known("people", REFERENT, "departments")  # before org-1: its referent always hears of it
        await w.say(
            AccountOpened(account_id=MANAGER, role="manager", email=await w.seal(MANAGER, {"email": MANAGER_EMAIL})),
            organization("org-1", "Secours du Morbihan", MANAGER),
            registered(VOLUNTEER, await w.seal(VOLUNTEER, {"first_name": "Camille", "email": VOLUNTEER_EMAIL})),
            MissionPublished(mission_id="mission-1", organization_id="org-1", content=content(), free_places=8),
        )
        await w.known("missions", "mission-1", "title")
        await w.known("people", VOLUNTEER, "contact")
        await w.known("organizations", "org-1", "manager_ids")
        yield w


def organization(organization_id: str, name: str, manager_id: str) -> OrganizationRegistered:
    return OrganizationRegistered(
        organization_id=organization_id,
        name=name,
        kind="association",
        rna="W561000123",
        postal_code="56000",
        department="56",
        manager_ids=[manager_id],
    )


def registered(volunteer_id: str, personal) -> VolunteerRegistered:
    return VolunteerRegistered(
        volunteer_id=volunteer_id,
        personal=personal,
        postal_code="56000",
        department="56",
        age_bracket="25-34",
        domains=["food_and_emergency_aid"],
        availability=["weekends"],
        mode="both",
        max_distance_km=20,
        onsite_restricted=False,
        visible_to_organizations=True,
    )


def invited(mission_id: str) -> VolunteerInvited:
    return VolunteerInvited(
        volunteer_id=VOLUNTEER,
        mission_id=mission_id,
        organization_id="org-1",
        invited_by=MANAGER,
        invited_on=date.today(),
    )


def received(application: str = "app-1", **extra) -> ApplicationReceived:
    return ApplicationReceived(
        application_id=application, mission_id="mission-1", volunteer_id=VOLUNTEER, organization_id="org-1", **extra
    )


def ids(application: str = "app-1") -> dict:
    return {
        "application_id": application,
        "mission_id": "mission-1",
        "volunteer_id": VOLUNTEER,
        "organization_id": "org-1",
    }


def submitted(mission_id: str = "mission-2") -> MissionSubmitted:
    return MissionSubmitted(mission_id=mission_id, organization_id="org-1", content=content("Garde d’enfants"))


# ---- one test per message: trigger, recipient, French subject and body, links ----


async def test_welcome_of_a_volunteer(world):
    mail = await world.mail(VOLUNTEER_EMAIL, "Bienvenue sur Civique")
    assert "Bonjour Camille," in mail.text
    assert f"{PUBLIC_URL}/missions" in mail.text and f'href="{PUBLIC_URL}/missions"' in mail.html
    assert mail.message["List-Unsubscribe"] is None  # transactional: no unsubscribe link


async def test_welcome_of_a_manager(world):
    mail = await world.mail(MANAGER_EMAIL, "votre espace structure est ouvert")
    assert "référent de votre département vérifie votre structure" in mail.text


async def test_referent_invitation_carries_its_link(world):
    sealed = await world.seal("invitation-key", {"email": "nouvelle@prefecture.fr", "token": "secret-token-1"})
    await world.say(
        ReferentInvited(
            invitation_id="inv-1",
            departments=["56", "35"],
            invited_by="admin-1",
            expires_at=datetime.now(UTC) + timedelta(days=3),
            invitation=sealed,
        )
    )
    mail = await world.mail("nouvelle@prefecture.fr", "devenir référent")
    assert f"{PUBLIC_URL}/referents/invitation?token=secret-token-1" in mail.text
    assert "les départements 56, 35" in mail.text


async def test_mission_submitted_goes_to_the_departments_referents(world):
    await world.say(submitted())
    mail = await world.mail(REFERENT_EMAIL, "Nouvelle mission à valider : Garde d’enfants")
    assert "Secours du Morbihan a soumis" in mail.text
    assert f"{PUBLIC_URL}/moderation/missions/mission-2" in mail.text
    await world.settled()
    assert not world.smtp.to(MANAGER_EMAIL, "Nouvelle mission à valider")


@pytest.mark.parametrize(
    ("decision", "comment", "subject", "body"),
    [
        ("validated", None, "est validée", "a validé la mission"),
        ("refused", "Mission commerciale.", "n’a pas été retenue", "« Mission commerciale. »"),
        (
            "changes_requested",
            "Précisez l’encadrement.",
            "Des modifications sont demandées",
            "« Précisez l’encadrement. »",
        ),
    ],
)
async def test_moderation_decisions_go_to_the_managers(world, decision, comment, subject, body):
    await world.say(
        submitted(),
        MissionModerated(mission_id="mission-2", organization_id="org-1", decision=decision, comment=comment),
    )
    mail = await world.mail(MANAGER_EMAIL, subject)
    assert body in mail.text and "Garde d’enfants" in mail.subject


async def test_a_refused_mission_online_is_told_once_as_unpublished(world):
    await world.say(
        MissionModerated(
            mission_id="mission-1", organization_id="org-1", decision="refused", reason="unsafe_conditions"
        ),
        MissionUnpublished(
            mission_id="mission-1", organization_id="org-1", department="56", reason="unsafe_conditions"
        ),
    )
    mail = await world.mail(MANAGER_EMAIL, "n’est plus en ligne")
    assert "Motif : les conditions de sécurité des bénévoles ne sont pas réunies" in mail.text
    decision = world.said[-2]
    await world.notifications.on_event(catalog.decode(decision), decision)  # redelivered: told the same way
    await world.settled()
    assert not world.smtp.to(MANAGER_EMAIL, "n’a pas été retenue")


async def test_organisation_registered_goes_to_its_departments_referents(world):
    """An organisation waits for its department's referents (DOMAIN.md), as a submitted mission does."""
    finistere, finistere_email = "referent-29", "referent@finistere.gouv.fr"
    await world.say(
        AccountOpened(
            account_id=finistere, role="referent", email=await world.seal(finistere, {"email": finistere_email})
        ),
        ReferentAppointed(referent_id=finistere, departments=["29"]),
    )
    await world.known("people", finistere, "departments")
    await world.say(
        AccountOpened(account_id="manager-2", role="manager", email=await world.seal("manager-2", {"email": "m@a.fr"})),
        OrganizationRegistered(
            organization_id="org-2",
            name="Maraudes de Lorient",
            kind="association",
            rna="W563000456",
            postal_code="56100",
            department="56",
            commune="Lorient",
            manager_ids=["manager-2"],
        ),
    )
    mail = await world.mail(REFERENT_EMAIL, "Nouvelle structure à valider : Maraudes de Lorient")
    assert "La structure Maraudes de Lorient (association, Lorient, département 56)" in mail.text
    assert "RNA : W563000456" in mail.text
    assert f"{PUBLIC_URL}/moderation/organizations/org-2" in mail.text
    assert f'href="{PUBLIC_URL}/moderation/organizations/org-2"' in mail.html
    assert mail.message["List-Unsubscribe"]  # activity: a referent may prefer the daily summary or the dashboard
    registration = world.said[-1]
    await world.notifications.on_event(catalog.decode(registration), registration)  # redelivered
    await world.notifications.log.send_due()
    await world.settled()
    assert len(world.smtp.to(REFERENT_EMAIL, "Nouvelle structure à valider : Maraudes de Lorient")) == 1
    assert not world.smtp.to(finistere_email, "Nouvelle structure")  # another department's referent
    assert not world.smtp.to("m@a.fr", "Nouvelle structure")
    # and it waits in the referents' daily list until it is decided
    await world.notifications.run_schedule(later(1))
    todo = await world.mail(REFERENT_EMAIL, "Ça bouge dans votre département")
    assert "Structures à valider :" in todo.text and "- Maraudes de Lorient (56)" in todo.text
    await world.settled()
    assert not world.smtp.to(finistere_email, "Ça bouge")


async def test_organisation_approved_goes_to_the_managers(world):
    await world.say(OrganizationApproved(organization_id="org-1", department="56"))
    mail = await world.mail(MANAGER_EMAIL, "Votre structure Secours du Morbihan est validée")
    assert f"{PUBLIC_URL}/espace-structure" in mail.text


async def test_organisation_rejected_goes_to_the_managers_with_the_reason(world):
    await world.say(
        OrganizationRejected(organization_id="org-1", department="56", reason="not_eligible", comment="Hors champ.")
    )
    mail = await world.mail(MANAGER_EMAIL, "n’a pas été validée")
    assert "Motif : la structure n’est pas éligible" in mail.text and "« Hors champ. »" in mail.text


async def test_application_received_goes_to_managers_and_is_confirmed_to_the_volunteer(world):
    await world.say(received())
    to_manager = await world.mail(MANAGER_EMAIL, "Nouvelle candidature pour « Distribution alimentaire »")
    assert f"{PUBLIC_URL}/espace-structure/missions/mission-1/candidatures" in to_manager.text
    assert VOLUNTEER_EMAIL not in to_manager.text and "Camille" not in to_manager.text  # no contact before acceptance
    await world.mail(VOLUNTEER_EMAIL, "Votre candidature pour « Distribution alimentaire » est enregistrée")


async def test_accepted_volunteer_gets_the_organisations_contact(world):
    await world.say(received(), ApplicationAccepted(**ids()))
    mail = await world.mail(VOLUNTEER_EMAIL, "Votre candidature est acceptée")
    assert MANAGER_EMAIL in mail.text and "Vannes" in mail.text
    assert "Secours du Morbihan a accepté" in mail.text


async def test_refused_volunteer_gets_the_reason(world):
    await world.say(
        received(),
        ApplicationRefused(**ids(), reason="requirements_not_fulfilled", comment="Il faut le permis B."),
    )
    mail = await world.mail(VOLUNTEER_EMAIL, "n’a pas été retenue")
    assert "Motif : les prérequis de la mission ne sont pas remplis" in mail.text
    assert "« Il faut le permis B. »" in mail.text


async def test_cancelled_application_is_told_to_the_volunteer(world):
    await world.say(received(), ApplicationAccepted(**ids()), ApplicationCancelled(**ids(), reason="mission_cancelled"))
    mail = await world.mail(VOLUNTEER_EMAIL, "n’aura pas lieu pour vous")
    assert "la mission a été annulée" in mail.text


async def test_withdrawal_is_told_to_the_managers(world):
    await world.say(received(), ApplicationWithdrawn(**ids(), reason="not_available"))
    mail = await world.mail(MANAGER_EMAIL, "Une candidature est retirée")
    assert "(plus disponible)" in mail.text


async def test_last_place_is_told_to_the_managers_once(world):
    applications = [f"app-{n}" for n in range(8)]  # 8 places: the 7th acceptance leaves one
    await world.say(*(received(a) for a in applications), *(ApplicationAccepted(**ids(a)) for a in applications[:7]))
    mail = await world.mail(MANAGER_EMAIL, "Plus qu’une place pour « Distribution alimentaire »")
    assert "il reste une place" in mail.text
    await world.say(ApplicationAccepted(**ids("app-7")))  # the last one: no second warning
    await world.mail(VOLUNTEER_EMAIL, "Votre candidature est acceptée", count=8)
    await world.settled()
    assert len(world.smtp.to(MANAGER_EMAIL, "Plus qu’une place")) == 1


async def test_full_mission_is_told_to_the_managers(world):
    await world.say(MissionFilled(mission_id="mission-1", organization_id="org-1"))
    mail = await world.mail(MANAGER_EMAIL, "La mission « Distribution alimentaire » est complète")
    assert "liste d’attente" in mail.text


async def test_waitlist_promotion_is_told_to_the_volunteer(world):
    await world.say(received(promoted_from_waitlist=True))
    mail = await world.mail(VOLUNTEER_EMAIL, "Une place s’est libérée")
    assert "liste d’attente" in mail.text
    await world.settled()
    assert not world.smtp.to(VOLUNTEER_EMAIL, "est enregistrée")


async def test_invitation_from_an_organisation_has_an_unsubscribe_link(world):
    await world.say(invited("mission-1"))
    mail = await world.mail(VOLUNTEER_EMAIL, "Secours du Morbihan vous propose une mission")
    assert f"{PUBLIC_URL}/missions/mission-1" in mail.text
    assert f"{PUBLIC_URL}/api/v1/notifications/unsubscribe?token=" in mail.text
    assert mail.message["List-Unsubscribe"].startswith(f"<{PUBLIC_URL}/api/v1/notifications/unsubscribe?token=")


async def test_idle_volunteer_gets_nearby_missions(world):
    await world.say(
        VolunteerIdle(
            volunteer_id=VOLUNTEER,
            period="2026-11",
            department="56",
            days_since_sign_up=15,
            nearby_mission_ids=["mission-1"],
        )
    )
    mail = await world.mail(VOLUNTEER_EMAIL, "Des missions près de chez vous")
    assert "Distribution alimentaire (Vannes)" in mail.text and f"{PUBLIC_URL}/missions/mission-1" in mail.text


async def test_territory_imbalance_goes_to_the_referents(world):
    await world.say(
        TerritoryImbalanceDetected(
            department="56",
            kind="too_many_volunteers",
            domain="food_and_emergency_aid",
            volunteers=400,
            open_places=5,
            missions_without_candidates=0,
            summary="400 bénévoles disponibles pour 5 places.",
        )
    )
    mail = await world.mail(REFERENT_EMAIL, "Département 56 : beaucoup de bénévoles pour peu de places")
    assert "400 bénévoles disponibles pour 5 places." in mail.text


async def test_pending_applications_weekly_reminder(world):
    await world.say(received("app-1"), received("app-2"))
    await world.known("applications", "app-2", "received_at")
    assert await world.notifications.run_schedule(later(8)) >= 1
    mail = await world.mail(MANAGER_EMAIL, "2 candidatures attendent votre réponse depuis plus de 7 jours")
    assert "« Distribution alimentaire » : 2 candidatures" in mail.text


async def test_referents_daily_todo_only_when_something_waits(world):
    await world.say(OrganizationApproved(organization_id="org-1", department="56"))
    await world.known("organizations", "org-1", "review_version")
    assert await world.notifications.run_schedule(later(1)) == 0  # nothing awaits the referent
    await world.say(submitted())
    await world.known("missions", "mission-2", "submitted_at")
    await world.notifications.run_schedule(later(2))
    mail = await world.mail(REFERENT_EMAIL, "Ça bouge dans votre département")
    assert "« Garde d’enfants » (56)" in mail.text


@pytest.mark.parametrize(("days_ago", "subject"), [(6, "a-t-elle pris fin ?"), (21, "va être clôturée")])
async def test_mission_past_its_end_date(world, days_ago, subject):
    moment = later(1)
    end = moment.date() - timedelta(days=days_ago)
    await world.say(
        MissionPublished(
            mission_id="mission-9", organization_id="org-1", content=content("Maraude", end=end), free_places=8
        )
    )
    await world.known("missions", "mission-9", "title")
    await world.notifications.run_schedule(moment)
    mail = await world.mail(MANAGER_EMAIL, subject)
    assert "Maraude" in mail.subject and end.strftime("%d/%m/%Y") in mail.text


async def test_referent_broadcast_reaches_idle_volunteers_with_a_report(world):
    engaged, opted_out = "volunteer-2", "volunteer-3"
    await world.say(
        registered(opted_out, await world.seal(opted_out, {"first_name": "Sam", "email": "sam@example.fr"})),
        registered(engaged, await world.seal(engaged, {"first_name": "Lou", "email": "lou@example.fr"})),
        ApplicationReceived(
            application_id="app-9", mission_id="mission-1", volunteer_id=engaged, organization_id="org-1"
        ),
        ApplicationAccepted(
            application_id="app-9", mission_id="mission-1", volunteer_id=engaged, organization_id="org-1"
        ),
    )
    await world.known("applications", "app-9", "status")

    async def accepted() -> bool:
        return (await world.ctx.documents.get("applications", "app-9"))["status"] == "accepted"

    await eventually(accepted, what="the acceptance projected")
    no_news = await world.call(
        "PUT", "/notifications/preferences", Actor(id=opted_out, role="volunteer"), json={"news": False}
    )
    assert no_news.json()["unsubscribed"] == ["news"]
    referent = Actor(id=REFERENT, role="referent")
    body = {"subject": "Collecte de la Banque alimentaire", "body": "Bonjour,\n\nUne grande collecte a lieu samedi."}
    assert (
        await world.call("POST", "/notifications/departments/35/broadcasts", referent, json=body)
    ).status_code == 403
    manager = Actor(id=MANAGER, role="manager")
    assert (await world.call("POST", "/notifications/departments/56/broadcasts", manager, json=body)).status_code == 403
    answer = await world.call("POST", "/notifications/departments/56/broadcasts", referent, json=body)
    assert answer.status_code == 202, answer.text
    mail = await world.mail(VOLUNTEER_EMAIL, "Collecte de la Banque alimentaire")
    assert "Une grande collecte a lieu samedi." in mail.text and "(56)" in mail.text
    assert "<p>Une grande collecte a lieu samedi.</p>" in mail.html
    await world.settled()
    assert not world.smtp.to("lou@example.fr", "Collecte")  # already engaged on a mission
    assert not world.smtp.to("sam@example.fr", "Collecte")  # does not want news
    report = (await world.call("GET", f"/notifications/broadcasts/{answer.json()['broadcast_id']}", referent)).json()
    assert (report["recipients"], report["sent"], report["opted_out"], report["waiting"]) == (2, 1, 1, 0)
    other = Actor(id="referent-35", role="referent")
    assert (
        await world.call("GET", f"/notifications/broadcasts/{answer.json()['broadcast_id']}", other)
    ).status_code == 403


async def test_summary_preference_gathers_activity_into_a_daily_digest(world):
    manager = Actor(id=MANAGER, role="manager")
    answer = await world.call("PUT", "/notifications/preferences", manager, json={"frequency": "summary"})
    assert answer.json() == {"frequency": "summary", "unsubscribed": []}
    await world.say(received("app-1"), received("app-2"))
    await world.known("applications", "app-2", "received_at")
    await world.settled()
    assert not world.smtp.to(MANAGER_EMAIL, "Nouvelle candidature")
    assert len(await world.deliveries(recipient_id=MANAGER, status="held")) == 2
    await world.notifications.run_schedule(later(1))
    mail = await world.mail(MANAGER_EMAIL, "Votre résumé Civique : 2 nouveautés")
    assert mail.text.count("Nouvelle candidature pour « Distribution alimentaire »") == 2


# ---- delivery guarantees ----


async def test_an_event_for_an_organisation_not_known_yet_waits_for_it(world):
    """Topics lag independently: an application may arrive before its organisation's registration."""
    late_manager = "manager-2"
    await world.say(
        MissionPublished(mission_id="mission-5", organization_id="org-2", content=content("Maraude"), free_places=8),
        ApplicationReceived(
            application_id="app-5", mission_id="mission-5", volunteer_id=VOLUNTEER, organization_id="org-2"
        ),
    )
    await world.known("awaiting_organizations", str(world.said[-1].event_id), "organization_id")
    await world.say(
        AccountOpened(
            account_id=late_manager, role="manager", email=await world.seal(late_manager, {"email": "tard@asso.fr"})
        ),
        organization("org-2", "Maraudes de Lorient", late_manager),
    )
    await world.mail("tard@asso.fr", "Nouvelle candidature pour « Maraude »")
    confirmation = await world.mail(VOLUNTEER_EMAIL, "Votre candidature pour « Maraude » est enregistrée")
    assert "Maraudes de Lorient" in confirmation.text
    assert await world.ctx.documents.count("awaiting_organizations") == 0


async def test_an_approval_that_comes_before_its_organisations_registration_waits_for_it(world):
    """Its review may be projected first (another topic): the approval waits for the managers, then is told."""
    late_manager = "manager-3"
    await world.say(OrganizationApproved(organization_id="org-3", department="56"))
    await world.known("awaiting_organizations", str(world.said[-1].event_id), "organization_id")
    await world.say(
        AccountOpened(
            account_id=late_manager, role="manager", email=await world.seal(late_manager, {"email": "vite@asso.fr"})
        ),
        organization("org-3", "Banque alimentaire de Vannes", late_manager),
    )
    await world.mail("vite@asso.fr", "Votre structure Banque alimentaire de Vannes est validée")
    assert await world.ctx.documents.count("awaiting_organizations") == 0


async def test_redelivery_of_every_consumed_event_sends_no_second_email(world):
    other, leaving = "volunteer-2", "referent-2"
    mission = {"mission_id": "mission-2", "organization_id": "org-1"}
    await world.say(
        ReferentInvited(
            invitation_id="inv-1",
            departments=["56"],
            invited_by="admin-1",
            expires_at=datetime.now(UTC) + timedelta(days=3),
            invitation=await world.seal("inv-key", {"email": "nouvelle@prefecture.fr", "token": "t"}),
        ),
        PasswordResetRequested(
            account_id=VOLUNTEER,
            expires_at=datetime.now(UTC) + timedelta(hours=1),
            reset=await world.seal("reset-key", {"token": "un-jeton-de-lien"}),
        ),
        ReferentAppointed(referent_id=leaving, departments=["56"]),
        ReferentRevoked(referent_id=leaving),
        OrganizationApproved(organization_id="org-1", department="56"),
        OrganizationRejected(organization_id="org-1", department="56", reason="duplicate"),
        MissionDrafted(**mission, content=content("Garde d’enfants")),
        MissionEdited(**mission, content=content("Garde d’enfants")),
        MissionSubmitted(**mission, content=content("Garde d’enfants")),
        MissionModerated(**mission, decision="validated"),
        MissionPublished(**mission, content=content("Garde d’enfants"), free_places=8),
        MissionModerated(**mission, decision="refused", reason="duplicate"),
        MissionUnpublished(**mission, department="56", reason="duplicate"),
        MissionCancelled(**mission, reason="Doublon."),
        received("app-1"),
        ApplicationAccepted(**ids("app-1")),
        ApplicationWithdrawn(**ids("app-1"), reason="not_available"),
        received("app-2"),
        ApplicationRefused(**ids("app-2"), reason="other"),
        received("app-3", promoted_from_waitlist=True),
        ApplicationAccepted(**ids("app-3")),
        ApplicationCancelled(**ids("app-3"), reason="mission_cancelled"),
        MissionFilled(mission_id="mission-1", organization_id="org-1"),
        MissionReopened(mission_id="mission-1", organization_id="org-1", free_places=1),
        MissionClosed(mission_id="mission-1", organization_id="org-1", reason="ended"),
        invited("mission-1"),
        VolunteerIdle(
            volunteer_id=VOLUNTEER, period="2026-11", department="56", days_since_sign_up=20, nearby_mission_ids=[]
        ),
        TerritoryImbalanceDetected(
            department="56",
            kind="missions_without_candidates",
            domain="emergency_childcare",
            volunteers=3,
            open_places=40,
            missions_without_candidates=6,
            summary="6 missions sans candidat depuis 7 jours.",
        ),
        registered(other, await world.seal(other, {"first_name": "Lou", "email": "lou@example.fr"})),
        VolunteerProfileUpdated(volunteer_id=other, max_distance_km=5),
        VolunteerErased(volunteer_id=other, department="56", age_bracket="25-34"),
    )
    referent = Actor(id=REFERENT, role="referent")
    body = {"subject": "Collecte samedi", "body": "Une collecte a lieu samedi matin."}
    answer = await world.call("POST", "/notifications/departments/56/broadcasts", referent, json=body)
    broadcast_id = answer.json()["broadcast_id"]
    assert {type(catalog.decode(e)) for e in world.said} >= set(CONSUMED)
    await world.mail(VOLUNTEER_EMAIL, "Collecte samedi")
    await world.settled()
    before, logged = len(world.smtp.received), len(await world.deliveries())
    assert before >= 20
    # every event again: through the handler (as after a crash before the inbox record) and through the bus
    for envelope in world.said:
        await world.notifications.on_event(catalog.decode(envelope), envelope)
    (posted,) = await world.ctx.store.read(f"broadcast-{broadcast_id}")
    await world.notifications.fan_out(catalog.decode(posted), posted)
    duplicates = _consumed("duplicate")
    await world.app.state.runtime.bus.publish([OutgoingMessage.of(e) for e in world.said])

    async def refused_by_the_inbox() -> bool:
        return _consumed("duplicate") - duplicates >= len(world.said)

    await eventually(refused_by_the_inbox, what="the redelivered events refused by the inbox")
    await world.notifications.log.send_due()
    await world.settled()
    assert len(world.smtp.received) == before and len(await world.deliveries()) == logged
    assert len(world.smtp.to(VOLUNTEER_EMAIL, "Bienvenue")) == 1


def _consumed(outcome: str) -> float:
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "civique_events_consumed"
        for sample in metric.samples
        if sample.labels.get("group") == "notifications.mail" and sample.labels.get("outcome") == outcome
    )


async def test_throttling_holds_the_rest_for_the_next_digest(world):
    world.ctx.settings.mail_hourly_limit = 2
    for n in range(4):
        mission = f"mission-t{n}"
        await world.say(
            MissionPublished(
                mission_id=mission, organization_id="org-1", content=content(f"Mission {n}"), free_places=8
            ),
            invited(mission),
        )
    await world.mail(VOLUNTEER_EMAIL, "vous propose une mission", count=2)
    await eventually(
        lambda: _count(world, status="held", template="mission_invitation", n=2), what="two invitations held"
    )
    assert len(world.smtp.to(VOLUNTEER_EMAIL, "vous propose une mission")) == 2
    await world.notifications.run_schedule(later(1))
    digest = await world.mail(VOLUNTEER_EMAIL, "Votre résumé Civique : 2 nouveautés")
    assert digest.text.count("vous propose une mission") == 2
    assert digest.message["List-Unsubscribe"]  # a digest of news can be unsubscribed from
    await world.notifications.run_schedule(later(1))  # the same day again: no second digest
    await world.settled()
    assert len(world.smtp.to(VOLUNTEER_EMAIL, "Votre résumé")) == 1


async def _count(world, *, n: int, **where) -> bool:
    return len(await world.deliveries(**where)) == n


async def test_unsubscribing_stops_news_and_keeps_transactional_emails(world):
    await world.say(invited("mission-1"))
    mail = await world.mail(VOLUNTEER_EMAIL, "vous propose une mission")
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    token = unsubscribe_token(mail)
    one_click = {"data": {"List-Unsubscribe": "One-Click"}}  # RFC 8058: what a mail client posts
    forged = await world.call("POST", "/notifications/unsubscribe", params={"token": token[:-2] + "xx"}, **one_click)
    assert forged.status_code == 400 and forged.json()["code"] == "invalid_unsubscribe_link"
    done = await world.call("POST", "/notifications/unsubscribe", params={"token": token}, **one_click)
    assert done.status_code == 200 and done.json() == {"unsubscribed": "news"}
    await world.say(
        MissionPublished(mission_id="mission-3", organization_id="org-1", content=content("Maraude"), free_places=8),
        invited("mission-3"),
        received(),
        ApplicationAccepted(**ids()),
    )
    await world.mail(VOLUNTEER_EMAIL, "Votre candidature est acceptée")
    await world.settled()
    assert len(world.smtp.to(VOLUNTEER_EMAIL, "vous propose une mission")) == 1
    assert len(await world.deliveries(recipient_id=VOLUNTEER, status="opted_out")) == 1
    own = await world.call("GET", "/notifications/preferences", Actor(id=VOLUNTEER, role="volunteer"))
    assert own.json()["unsubscribed"] == ["news"]


BROWSER = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def unsubscribe_token(mail) -> str:
    return mail.message["List-Unsubscribe"].split("token=")[1].rstrip(">")


async def test_opening_an_unsubscribe_link_only_asks_and_its_button_unsubscribes(world):
    """Mail scanners and link previews open links: the GET shows what would stop, the POST of its form does it."""
    volunteer = Actor(id=VOLUNTEER, role="volunteer")
    await world.say(invited("mission-1"))
    token = unsubscribe_token(await world.mail(VOLUNTEER_EMAIL, "vous propose une mission"))
    for _ in range(2):  # a scanner, then the person
        page = await world.call("GET", "/notifications/unsubscribe", params={"token": token}, headers=BROWSER)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<html lang="fr">' in page.text and "Ne plus recevoir de propositions de missions ?" in page.text
    assert "Ce qui s’arrête :</strong> les missions que les structures vous proposent" in page.text
    assert "Ce qui continue :</strong> les e-mails sur votre compte et vos candidatures" in page.text
    assert f'<form method="post" action="?token={token}">' in page.text
    assert '<button type="submit"' in page.text and "Confirmer ma désinscription</button>" in page.text
    assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
    assert (await world.call("GET", "/notifications/preferences", volunteer)).json()["unsubscribed"] == []
    await world.say(
        MissionPublished(mission_id="mission-3", organization_id="org-1", content=content("Maraude"), free_places=8),
        invited("mission-3"),
    )
    still = await world.mail(VOLUNTEER_EMAIL, "vous propose une mission", count=2)  # still delivered
    assert f"{PUBLIC_URL}/missions/mission-3" in still.text

    for bad in ({"token": token[:-2] + "xx"}, {"token": "é" * 600}, {}):
        refused = await world.call("GET", "/notifications/unsubscribe", params=bad, headers=BROWSER)
        assert refused.status_code == 400 and refused.headers["content-type"].startswith("text/html")
        assert 'data-code="invalid_unsubscribe_link"' in refused.text
        assert "Ce lien de désinscription n’est pas valide." in refused.text and '<html lang="fr">' in refused.text
    forged = await world.call(
        "POST", "/notifications/unsubscribe", params={"token": token[:-2] + "xx"}, data={"token": "x"}, headers=BROWSER
    )
    assert forged.status_code == 400 and "Ce lien de désinscription n’est pas valide." in forged.text

    # the form's button: the browser posts the form to the same address, and prefers HTML
    confirmed = await world.call(
        "POST", "/notifications/unsubscribe", params={"token": token}, data={"token": token}, headers=BROWSER
    )
    assert confirmed.status_code == 200 and confirmed.headers["content-type"].startswith("text/html")
    assert '<html lang="fr">' in confirmed.text and "Désinscription enregistrée" in confirmed.text
    assert "Vous ne recevrez plus de propositions de missions" in confirmed.text
    assert (await world.call("GET", "/notifications/preferences", volunteer)).json()["unsubscribed"] == ["news"]
    await world.say(
        MissionPublished(mission_id="mission-4", organization_id="org-1", content=content("Collecte"), free_places=8),
        invited("mission-4"),
    )
    await world.settled()
    assert len(world.smtp.to(VOLUNTEER_EMAIL, "vous propose une mission")) == 2
    assert [d["template"] for d in await world.deliveries(recipient_id=VOLUNTEER, status="opted_out")] == [
        "mission_invitation"
    ]


async def test_scheduler_writes_one_reminder_per_period(world):
    await world.say(received())
    await world.known("applications", "app-1", "received_at")
    monday = later(8)
    await world.notifications.run_schedule(monday)
    await world.notifications.run_schedule(monday + timedelta(hours=3))
    await world.mail(MANAGER_EMAIL, "attend votre réponse")
    await world.settled()
    assert len(world.smtp.to(MANAGER_EMAIL, "attend votre réponse")) == 1
    await world.notifications.run_schedule(monday + timedelta(days=7))  # next week, still unanswered
    await world.mail(MANAGER_EMAIL, "attend votre réponse", count=2)


async def test_temporary_failures_are_retried_and_refusals_dead_lettered(world):
    await world.settled()
    world.smtp.failures[:] = ["451 4.3.0 Try again later", "451 4.3.0 Try again later"]
    await world.say(received())
    await world.mail(VOLUNTEER_EMAIL, "est enregistrée")
    await world.mail(MANAGER_EMAIL, "Nouvelle candidature")
    await world.settled()  # received by the server does not mean recorded yet
    retried = await world.deliveries(source=str(world.said[-1].event_id))
    assert sum(d["attempts"] for d in retried) == 2 and {d["status"] for d in retried} == {"sent"}
    dead_letters = REGISTRY.get_sample_value("civique_mail_dead_letters_total", {"reason": "smtp_refused"}) or 0
    world.smtp.failures[:] = ["550 5.1.1 Mailbox unknown"]
    await world.say(ApplicationRefused(**ids(), reason="other"))
    await eventually(lambda: _count(world, status="dead", n=1), what="the refused e-mail dead-lettered")
    assert REGISTRY.get_sample_value("civique_mail_dead_letters_total", {"reason": "smtp_refused"}) == dead_letters + 1
    admin = Actor(id="admin-1", role="admin")
    failures = (await world.call("GET", "/notifications/failures", admin)).json()
    assert [f["template"] for f in failures] == ["application_refused"] and "550" in failures[0]["reason"]
    assert VOLUNTEER_EMAIL not in str(failures)
    assert (await world.call("GET", "/notifications/failures", Actor(id=REFERENT, role="referent"))).status_code == 403


async def test_emails_leave_through_a_few_connections_kept_open(world):
    await world.say(received(), ApplicationAccepted(**ids()), ApplicationRefused(**ids("app-2"), reason="other"))
    await world.mail(VOLUNTEER_EMAIL, "retenue")
    await world.settled()
    assert len(world.smtp.received) >= 5
    assert len(world.smtp.connections) <= world.app.state.runtime.settings.smtp_connections
    assert len(world.smtp.connections) < len(world.smtp.received)  # one connection each before


async def test_settled_emails_leave_the_log_after_the_retention(world):
    await world.say(received())
    await world.mail(MANAGER_EMAIL, "Nouvelle candidature")
    world.ctx.settings.mail_hourly_limit = 0  # the next news e-mail is held: it must outlive the retention
    await world.say(invited("mission-1"))
    await eventually(lambda: _count(world, status="held", n=1), what="the invitation held")
    await world.settled()
    sent = len(await world.deliveries(status="sent"))
    assert sent >= 4  # two welcomes, the application to the manager and its confirmation
    moment = datetime.now(UTC) + timedelta(days=world.ctx.settings.mail_log_retention_days + 1)
    await world.notifications.log.forget_settled(moment - timedelta(days=2))
    assert len(await world.deliveries(status="sent")) == sent  # not yet
    await world.notifications.log.forget_settled(moment)
    assert await world.deliveries(status="sent") == []
    assert [d["template"] for d in await world.deliveries()] == ["mission_invitation"]


async def test_erased_volunteer_gets_nothing_more(world):
    await world.mail(VOLUNTEER_EMAIL, "Bienvenue")
    await Vault(world.ctx.keys).forget(VOLUNTEER)
    await world.say(VolunteerErased(volunteer_id=VOLUNTEER, department="56", age_bracket="25-34"), received())
    await world.mail(MANAGER_EMAIL, "Nouvelle candidature")
    await world.settled()
    assert [d["status"] for d in await world.deliveries(template="application_confirmed")] == ["skipped"]
    assert len(world.smtp.to(VOLUNTEER_EMAIL)) == 1


async def test_a_reset_link_goes_by_email_once_and_not_at_all_once_it_has_served(world):
    def requested(sealed) -> PasswordResetRequested:
        expires_at = datetime.now(UTC) + timedelta(hours=1)
        return PasswordResetRequested(account_id=VOLUNTEER, expires_at=expires_at, reset=sealed)

    await world.say(requested(await world.seal("reset-1", {"token": "jeton-du-lien"})))
    mail = await world.mail(VOLUNTEER_EMAIL, "Choisir un nouveau mot de passe")
    assert f"{PUBLIC_URL}/mot-de-passe/nouveau?token=jeton-du-lien" in mail.text
    used = await world.seal("reset-2", {"token": "jeton-deja-servi"})
    await Vault(world.ctx.keys).forget("reset-2")  # the link served (or expired) before its e-mail could leave
    await world.say(requested(used))
    await world.settled()
    statuses = sorted(d["status"] for d in await world.deliveries(template="password_reset"))
    assert statuses == ["sent", "skipped"]
    assert len(world.smtp.to(VOLUNTEER_EMAIL, "Choisir un nouveau mot de passe")) == 1


# ---- a crash between the two steps of a send: the service as a process, killed with -9 by the SMTP server ----


@pytest.mark.parametrize("killed_at", ["content", "recipient"])
async def test_service_killed_while_sending_sends_each_email_at_most_once(settings, smtp, killed_at):
    """Killed once the content is on the server (sent, not recorded): the e-mail is never repeated and is
    reported unconfirmed. Killed before the content (the server drops the transaction): sent after restart."""
    settings = settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port,
            "link_secret": LINK_SECRET,
            "mail_send_interval_s": 0.02,
            "mail_unconfirmed_after_s": 0.5,
            "port": free_port(),
            "jwt_secret": "unused",
            "internal_token": "unused",
        }
    )
    keys, storage, bus = open_storage(settings, "keys"), open_storage(settings, "notifications"), open_bus(settings)
    process: subprocess.Popen | None = None

    def start() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "services.notifications"],
            cwd=ROOT,
            env=env_of(settings),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its group: the service and the worker processes it starts
        )

    def kill_once() -> None:
        if killed_at_hooks:
            killed_at_hooks.clear()
            os.killpg(process.pid, signal.SIGKILL)  # the whole service: the sender may run in a worker
            process.wait()

    killed_at_hooks = [killed_at]
    setattr(smtp, "on_data" if killed_at == "content" else "on_rcpt", kill_once)
    try:
        process = start()
        personal = await Vault(keys.documents).seal(VOLUNTEER, {"first_name": "Camille", "email": VOLUNTEER_EMAIL})
        await bus.publish([OutgoingMessage.of(registered(VOLUNTEER, personal).envelope(1))])
        await eventually(lambda: _returned(process), within=60, what="the SMTP server to kill the service")
        assert not killed_at_hooks
        process = start()
        final = "unconfirmed" if killed_at == "content" else "sent"

        async def recorded() -> bool:
            found = await storage.documents.find(DELIVERIES, {"template": "volunteer_welcome"})
            return [d["status"] for d in found] == [final]

        await eventually(recorded, within=60, what=f"the welcome e-mail recorded {final} after the restart")
        assert len(smtp.to(VOLUNTEER_EMAIL, "Bienvenue")) == 1
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(timeout=30)
        await bus.close()
        await storage.close()
        await keys.close()


async def _returned(process: subprocess.Popen) -> bool:
    return process.poll() is not None


# ---- an e-mail that cannot be written, that may have left unanswered, that another sender holds ----


def _metric(name: str, reason: str) -> float:
    return REGISTRY.get_sample_value(name, {"reason": reason}) or 0


async def test_an_address_no_email_can_carry_is_dead_lettered_and_nothing_is_sent(world):
    await world.settled()
    received, dead = len(world.smtp.received), _metric("civique_mail_dead_letters_total", "address_unwritable")
    sealed = await world.seal("volunteer-2", {"first_name": "Élodie", "email": "élodie@exemple.fr"})  # SMTPUTF8 only
    await world.say(registered("volunteer-2", sealed))
    await eventually(lambda: _count(world, status="dead", recipient_id="volunteer-2", n=1), what="the welcome dead")
    (letter,) = await world.deliveries(recipient_id="volunteer-2")
    assert letter["template"] == "volunteer_welcome" and "address" in letter["reason"]
    assert _metric("civique_mail_dead_letters_total", "address_unwritable") == dead + 1
    await world.settled()
    assert len(world.smtp.received) == received


async def test_no_answer_to_the_content_is_reported_unconfirmed_and_never_repeated(world):
    """The content went, the server's answer did not come: it may have been accepted, so it is not sent again."""
    await world.settled()
    world.ctx.settings.smtp_timeout_s = 0.5
    await world.notifications.log.mailer.close()  # the connections opened from now on wait 0.5 s for an answer
    unconfirmed = _metric("civique_mail_unconfirmed_total", "no_answer_to_content")
    slow = [1.5]

    def answer_too_late() -> None:
        if slow:
            time.sleep(slow.pop())  # the server's own thread: its answer comes after the client gave up

    world.smtp.on_data = answer_too_late
    await world.say(ApplicationRefused(**ids(), reason="other"))
    await eventually(
        lambda: _count(world, status="unconfirmed", template="application_refused", n=1), what="it unconfirmed"
    )
    (letter,) = await world.deliveries(template="application_refused")
    assert letter["reason"].startswith("no_answer_to_content")
    assert _metric("civique_mail_unconfirmed_total", "no_answer_to_content") == unconfirmed + 1
    for _ in range(2):
        await world.notifications.log.send_due()
    await world.settled()
    assert len(world.smtp.to(VOLUNTEER_EMAIL, "n’a pas été retenue")) == 1  # what the server got, once
    assert await world.ctx.documents.get("delivery_claims", letter["id"])  # the claim stays


async def test_another_senders_claim_leaves_the_email_to_it_even_through_a_refusal(world):
    """A claim the sender did not make is never released by it (a refusal of the recipient included), and is
    reported unconfirmed once it outlived `mail_unconfirmed_after_s`: the other sender may have sent it."""
    await world.settled()
    world.ctx.settings.mail_unconfirmed_after_s = 1.0
    unconfirmed = _metric("civique_mail_unconfirmed_total", "interrupted_after_claim")
    refusals = [RuntimeError("recipient refused for now")]  # aiosmtpd answers 500

    def refuse_once() -> None:
        if refusals:
            raise refusals.pop()

    world.smtp.on_rcpt = refuse_once
    refused = ApplicationRefused(**ids(), reason="other")
    world.versions[refused.stream_id()] = version = world.versions.get(refused.stream_id(), 0) + 1
    envelope = refused.envelope(version)
    key = delivery_key(str(envelope.event_id), VOLUNTEER, "application_refused")
    claim = {"claimed_at": datetime.now(UTC).isoformat(), "by": "another-replica"}
    await world.ctx.documents.insert("delivery_claims", key, claim)
    world.said.append(envelope)
    await world.app.state.runtime.bus.publish([OutgoingMessage.of(envelope)])
    await eventually(lambda: _count(world, status="unconfirmed", id=key, n=1), what="the e-mail unconfirmed")
    assert not refusals  # the refusal came while the claim was young: the claim stayed
    assert await world.ctx.documents.get("delivery_claims", key) == claim
    assert _metric("civique_mail_unconfirmed_total", "interrupted_after_claim") == unconfirmed + 1
    await world.settled()
    assert not world.smtp.to(VOLUNTEER_EMAIL, "n’a pas été retenue")
