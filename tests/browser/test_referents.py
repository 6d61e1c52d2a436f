"""The referents' space in Chromium: a referent of the Finistère, invited by e-mail and appointed, logs in, finds an
organisation and a mission waiting, approves the one, validates the other and sees each new state at once; the
queues and the territory's dashboard on the way, then writes to the department's volunteers (a preview, the report)
(axe and a screenshot of every page); an admin then invites a referent from their page; on both backends."""

from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, Browse, Platform

ORGANIZATION = "Solidarité Quimper"
MISSION = "Courses pour les aînés de Quimper"
VOLUNTEER = {
    "first_name": "Lucie",
    "last_name": "Aubrac",
    "email": "lucie.aubrac@exemple.fr",
    "phone": "06 11 22 33 44",
    "birth_date": "1990-07-29",
    "postal_code": "29000",
    "domains": ["keeping_in_touch"],
    "availability": ["evenings"],
}


def waiting(platform: Platform, referent: str) -> tuple[str, str]:
    """An organisation of Quimper registered with its manager's account and a mission it submitted, both in the
    referents' queue: (organisation id, mission id)."""
    registered = platform.call(
        "POST",
        "/organizations",
        expect=201,
        json={
            "account": {"email": "coordination@solidarite-quimper.fr", "password": PASSWORD},
            "organization": {"name": ORGANIZATION, "kind": "association", "rna": "W291000321", "postal_code": "29000"},
        },
    )
    organization_id = registered["organization_id"]
    manager = platform.login("coordination@solidarite-quimper.fr")
    mission = {
        "title": MISSION,
        "description": "Faire les courses de personnes âgées qui ne peuvent plus sortir, et les leur apporter.",
        "domain": "keeping_in_touch",
        "remote": True,
        "places": 2,
    }
    mission_id = platform.call("POST", f"/organizations/{organization_id}/missions", manager, 201, json=mission)[
        "mission_id"
    ]
    platform.call("POST", f"/missions/{mission_id}/submit", manager, 204)
    platform.until(
        lambda: (
            {organization_id, mission_id} <= {e["id"] for e in platform.call("GET", "/departments/29/queue", referent)}
        ),
        "the organisation and the mission in the queue",
    )
    return organization_id, mission_id


def test_a_referent_approves_an_organisation_and_validates_a_mission(platform: Platform, browse: Browse) -> None:
    page = browse.page
    referent = platform.referent("referente.quimper@exemple.fr", "29")
    organization_id, mission_id = waiting(platform, referent)

    browse.goto("/moderation")  # signed out: the login page, then back
    page.wait_for_url("**/connexion?suite=%2Fmoderation")
    page.get_by_label("Adresse e-mail").fill("referente.quimper@exemple.fr")
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url("**/moderation")
    browse.check("a-traiter")
    expect(page.get_by_role("heading", level=1)).to_have_text("À traiter")
    expect(page.locator("[data-attente=organization]")).to_contain_text(ORGANIZATION)
    expect(page.locator("[data-attente=mission]")).to_contain_text(MISSION)

    page.locator("[data-attente=organization]").get_by_role("link", name=ORGANIZATION).click()
    page.wait_for_url(f"**/moderation/organizations/{organization_id}")
    browse.check("structure")
    expect(page.locator("#etat")).to_contain_text("En attente de validation")
    page.locator("label", has_text="Valider la structure").click()  # DSFR: the label covers its radio
    page.get_by_role("button", name="Enregistrer la décision").click()
    page.wait_for_url(f"**/moderation/organizations/{organization_id}")
    browse.check("structure-validee")
    expect(page.locator("#etat")).to_contain_text("Validée")
    expect(page.get_by_text("Décision enregistrée : structure validée.")).to_be_visible()

    page.get_by_role("navigation", name="Menu principal").get_by_role("link", name="Missions").click()
    page.wait_for_url("**/moderation/missions")
    browse.check("file-missions")
    row = page.locator("#file tbody tr", has_text=MISSION)
    expect(row).to_contain_text("En attente de validation")
    expect(row.get_by_label(f"Sélectionner {MISSION}")).not_to_be_checked()  # for the bulk validation
    row.get_by_role("link", name=MISSION).click()
    page.wait_for_url(f"**/moderation/missions/{mission_id}")
    browse.check("mission")
    page.locator("label", has_text="Refuser la mission").click()  # DSFR: the label covers its radio
    page.get_by_role("button", name="Enregistrer la décision").click()  # without a reason: refused, in French
    browse.check("mission-motif-manquant")
    expect(page.locator("#erreurs")).to_contain_text("Choisissez le motif du refus.")
    page.locator("label", has_text="Valider la mission").click()  # DSFR: the label covers its radio
    page.get_by_label("Commentaire pour la structure").fill("Merci pour cette mission utile.")
    page.get_by_role("button", name="Enregistrer la décision").click()
    page.wait_for_url(f"**/moderation/missions/{mission_id}")
    browse.check("mission-validee")
    expect(page.locator("#etat")).to_contain_text("Validée")
    expect(page.get_by_text("« Merci pour cette mission utile. »")).to_be_visible()

    browse.goto("/moderation/missions?etat=validated")
    expect(page.locator("#file tbody tr", has_text=MISSION)).to_contain_text("Validée")
    browse.goto("/moderation/organizations?etat=")
    expect(page.locator("#file tbody tr", has_text=ORGANIZATION)).to_contain_text("Validée")
    browse.goto("/departements/29/territoire")
    expect(page.get_by_role("heading", level=1)).to_have_text("Territoire : Finistère (29)")
    platform.call("POST", "/volunteers", expect=202, json={"password": PASSWORD, "volunteer": VOLUNTEER})
    platform.until(
        lambda: platform.call("GET", "/departments/29/broadcast-audience", referent)["recipients"] == 1,
        "the volunteer of Quimper among a broadcast's recipients",
    )
    page.get_by_role("link", name="Écrire aux bénévoles sans mission du département").click()  # a broadcast
    page.wait_for_url("**/departements/29/message")
    browse.check("message")
    page.get_by_label("Objet").fill("Collecte de samedi")
    page.get_by_role("textbox", name="Message").fill("Bonjour,\n\nUne collecte a lieu samedi matin devant la mairie.")
    page.get_by_role("button", name="Prévisualiser").click()
    browse.check("message-apercu")
    expect(page.locator("#apercu p")).to_have_count(2)  # the paragraphs, as the e-mail shows them
    page.get_by_role("button", name="Envoyer à 1 bénévole").click()
    page.wait_for_url("**/moderation/messages/*")
    browse.check("message-bilan")
    expect(page.get_by_role("heading", level=1)).to_have_text("Bilan du message « Collecte de samedi »")
    expect(page.locator("#bilan tr", has_text="Destinataires").locator("td")).to_have_text("1")
    browse.goto("/departements/56/territoire")  # not hers: a French 403 page
    expect(page.get_by_role("heading", level=1)).to_have_text("Accès réservé")

    page.get_by_role("button", name="Se déconnecter").click()  # an admin, now: their pages
    page.wait_for_load_state("load")
    browse.goto("/connexion?suite=%2Fmoderation%2Fadministration")
    page.get_by_label("Adresse e-mail").fill("admin@exemple.fr")
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url("**/moderation/administration")
    browse.check("administration")
    expect(page.locator("#referents")).to_contain_text("Finistère (29)")
    page.get_by_label("Adresse e-mail du référent").fill("referent.brest@exemple.fr")
    page.get_by_label("Départements").fill("29")
    page.get_by_role("button", name="Envoyer l’invitation").click()
    page.wait_for_url("**/moderation/administration")
    browse.check("administration-invitation")
    expect(page.get_by_text("Invitation envoyée à referent.brest@exemple.fr (29).")).to_be_visible()
    platform.until(lambda: platform.mailbox("referent.brest@exemple.fr"), "the invitation e-mail")
