"""The pure parts of the referents' pages: every reason the domain knows has its French label, ages read as
people say them, a queue's filters survive its pages' links."""

from typing import get_args

from services.moderation.handlers import Listing
from services.moderation.pages import (
    MISSION_DECISIONS,
    MISSION_REFUSAL_REASONS,
    ORGANIZATION_DECISIONS,
    ORGANIZATION_REJECTION_REASONS,
    age,
    query_of,
)
from shared.contracts.moderation import MissionDecision, OrganizationDecision
from shared.events.moderation import MissionRefusalReason, OrganizationRejectionReason


def test_every_decision_and_reason_of_the_domain_has_its_label() -> None:
    assert set(MISSION_REFUSAL_REASONS) == set(get_args(MissionRefusalReason))
    assert set(ORGANIZATION_REJECTION_REASONS) == set(get_args(OrganizationRejectionReason))
    assert set(MISSION_DECISIONS) == set(get_args(MissionDecision))
    assert set(ORGANIZATION_DECISIONS) == set(get_args(OrganizationDecision))


def test_ages_read_in_hours_then_in_days() -> None:
    assert [age(h) for h in (0.4, 5.2, 47.9, 72.0)] == ["moins d’1 h", "5 h", "47 h", "3 j"]


def test_a_queue_page_link_keeps_its_filters_and_every_state_stays_distinct_from_the_default() -> None:
    wanted = Listing("mission", state="", department="29", domain="", text="colis")
    assert query_of(wanted, page=2) == "departement=29&texte=colis&page=2&etat="
    assert query_of(Listing("organization")) == "etat=pending"
    assert query_of(Listing("mission", waiting_days=7, newest_first=True)) == "etat=pending&attente=7&tri=recentes"
