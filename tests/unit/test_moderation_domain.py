import pytest

from services.moderation import domain
from shared.errors import Refusal
from shared.events import (
    MissionChangesRequested,
    MissionRefused,
    MissionValidated,
    ModerationPolicyChanged,
    OrganizationApproved,
    OrganizationRejected,
    ReferentAppointed,
    ReferentRevoked,
)
from shared.events.vocabulary import MissionContent, Place, SafetyConditions

CONTENT = MissionContent(
    title="Garde d’enfants de soignants",
    description="Accueillir les enfants des soignants du CHU.",
    domain="emergency_childcare",
    remote=False,
    department="56",
    places=3,
    place=Place(postal_code="56000", department="56"),
    safety=SafetyConditions(distancing=True, protective_equipment=True, supervision=True),
)
AWAITING = domain.AwaitingReview("o1", "56", CONTENT, submissions=1)


def decide(decision="validate", *, made=0, awaiting=AWAITING, reason=None, comment=None):
    return domain.decide_mission("m1", made, awaiting, decision, reason, comment)


def code_of(call) -> str:
    with pytest.raises(Refusal) as refusal:
        call()
    return refusal.value.code


def test_a_referent_validates_refuses_or_sends_back_a_mission_of_their_department():
    assert [type(e) for e in decide()] == [MissionValidated]
    refused = decide("refuse", reason="outside_priority_domains", comment="Hors domaines")
    assert isinstance(refused[0], MissionRefused) and refused[0].reason == "outside_priority_domains"
    changes = decide("request_changes", comment="Ajoutez l’adresse exacte")
    assert isinstance(changes[0], MissionChangesRequested) and changes[0].department == "56"


def test_refused_decisions():
    assert code_of(lambda: decide(made=1)) == "already_decided"
    assert code_of(lambda: decide("refuse")) == "reason_required"
    assert code_of(lambda: decide("request_changes")) == "comment_required"
    unsafe = domain.AwaitingReview("o1", "56", CONTENT.model_copy(update={"safety": None}), 1)
    assert code_of(lambda: decide(awaiting=unsafe)) == "unsafe_mission"


def test_a_resubmitted_mission_can_be_decided_again():
    resubmitted = domain.AwaitingReview("o1", "56", CONTENT, submissions=2)
    assert [type(e) for e in decide(made=1, awaiting=resubmitted)] == [MissionValidated]


def org(decision="approve", *, decided=False, department="56", reason=None):
    return domain.decide_organization("o1", decided, department, decision, reason, None)


def test_organisations_are_approved_or_rejected_once():
    assert [type(e) for e in org()] == [OrganizationApproved]
    assert [type(e) for e in org("reject", reason="not_eligible")] == [OrganizationRejected]
    assert code_of(lambda: org(decided=True)) == "already_decided"
    assert code_of(lambda: org("reject")) == "reason_required"


def test_referents_are_appointed_revoked_and_replayed():
    referent = domain.Referent("r1")
    appointed = domain.appoint_referent(referent, ["56", "29", "56"])
    assert appointed == [ReferentAppointed(referent_id="r1", departments=["29", "56"])]
    referent = domain.Referent.replay("r1", appointed)
    assert referent.departments == ("29", "56")
    assert domain.appoint_referent(referent, ["56", "29"]) == []
    assert code_of(lambda: domain.appoint_referent(referent, [])) == "departments_required"
    revoked = domain.revoke_referent(referent)
    assert revoked == [ReferentRevoked(referent_id="r1")]
    assert domain.Referent.replay("r1", appointed + revoked).departments == ()
    assert code_of(lambda: domain.revoke_referent(domain.Referent("r1"))) == "referent_not_found"


def test_policy_changes_only_when_different():
    assert domain.change_policy("56", "pre", "pre") == []
    assert domain.change_policy("56", "pre", "post") == [ModerationPolicyChanged(department="56", policy="post")]
    assert ModerationPolicyChanged(department="2A", policy="post").stream_id() == "department-2A"


def test_names_typed_twice_have_the_same_key():
    assert domain.name_key("Restos du Cœur – Vannes") == domain.name_key("  restos du coeur, VANNES ")
    assert domain.name_key("L’Épicerie solidaire") == domain.name_key("l'epicerie  solidaire") == "l epicerie solidaire"
    assert domain.name_key("Secours populaire") != domain.name_key("Secours catholique")


def organization(organization_id: str, **fields) -> dict:
    base = {"id": organization_id, "department": "56", "name_key": f"nom {organization_id}", "siret": None, "rna": None}
    return base | fields


def test_possible_duplicates_share_a_siret_an_rna_or_a_name_in_the_department():
    new = organization("o2", siret="73282932000074", rna="W561000123", name_key="restos du coeur")
    assert domain.duplicate_reasons(new, organization("o1", siret="73282932000074")) == ["siret"]
    assert domain.duplicate_reasons(new, organization("o1", rna="W561000123", department="29")) == ["rna"]
    assert domain.duplicate_reasons(new, organization("o1", name_key="restos du coeur")) == ["name"]
    assert domain.duplicate_reasons(new, organization("o1", name_key="restos du coeur", department="29")) == []
    assert domain.duplicate_reasons(new, {**new, "id": "o1"}) == ["siret", "rna", "name"]
    assert domain.duplicate_reasons(new, new) == []  # not a duplicate of itself
    no_numbers = organization("o3")
    assert domain.duplicate_reasons(no_numbers, organization("o4")) == []  # missing numbers are not equal numbers
