"""An organisation's journey in Chromium, on both backends: register (its manager's account with it) → pending,
explained → approved by the department's referent → a mission created and submitted → validated → online →
applications accepted and refused in the browser → the mission full."""

from datetime import date, timedelta

from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, Browse, Platform

TITLE = "Appels aux aînés isolés de Lorient"


def test_an_organisation_registers_publishes_and_answers_its_volunteers(platform: Platform, browse: Browse) -> None:
    page = browse.page
    referent = platform.referent("referent.structures@exemple.fr", "56")

    browse.goto("/espace-structure")
    page.get_by_role("link", name="Inscrire ma structure").click()
    page.wait_for_url("**/espace-structure/inscription")
    browse.check("inscription-structure")
    page.get_by_role("button", name="Inscrire ma structure").click()  # nothing filled in
    browse.check("inscription-structure-erreurs")
    expect(page.locator("#erreurs")).to_contain_text("Nom de la structure")
    page.get_by_label("Votre adresse e-mail").fill("coordination@entraide-lorient.fr")
    page.get_by_label("Choisissez un mot de passe").fill(PASSWORD)
    page.get_by_label("Nom de la structure").fill("Entraide Lorient")
    page.get_by_label("Type de structure").select_option("association")
    page.get_by_label("Numéro RNA (associations)").fill("W563000123")
    page.get_by_label("Code postal").fill("56100")
    page.get_by_role("button", name="Inscrire ma structure").click()
    page.wait_for_url("**/espace-structure")
    browse.check("espace-structure-en-attente")
    expect(page.get_by_text("Votre structure est inscrite")).to_be_visible()
    expect(page.locator("h2 .fr-badge")).to_have_text("En attente de validation")

    organization_id = page.get_by_role("link", name="Créer une mission").get_attribute("href").split("/")[3]  # type: ignore[union-attr]
    platform.eventually(
        "POST", f"/moderation/organizations/{organization_id}/decision", referent, 204, json={"decision": "approve"}
    )
    platform.until(
        lambda: page.reload() and "Validée" in (page.locator("h2 .fr-badge").text_content() or ""), "the approval"
    )

    page.get_by_role("link", name="Créer une mission").click()
    browse.check("mission-nouvelle")
    page.get_by_label("Titre de la mission").fill(TITLE)
    page.get_by_label("Description").fill(
        "Appeler chaque semaine des personnes âgées isolées pour prendre des nouvelles."
    )
    page.get_by_label("Domaine").select_option("keeping_in_touch")
    page.locator("label", has_text="À distance").click()
    page.get_by_label("Nombre de bénévoles recherchés").fill("1")
    page.get_by_label("Fin").fill((date.today() + timedelta(days=30)).isoformat())
    page.get_by_role("button", name="Enregistrer et soumettre").click()
    page.wait_for_url("**/espace-structure")
    browse.check("mission-soumise")
    row = page.locator("table tbody tr", has_text=TITLE)
    expect(row).to_contain_text("En attente de validation")

    missions = platform.call(
        "GET", f"/organizations/{organization_id}/missions", platform.login("coordination@entraide-lorient.fr")
    )
    mission_id = missions[0]["id"]
    platform.eventually(
        "POST", f"/moderation/missions/{mission_id}/decision", referent, 204, json={"decision": "validate"}
    )
    platform.until(lambda: page.reload() and "En ligne" in (row.text_content() or ""), "the mission online")

    for email, name in (("jeanne@exemple.fr", "Jeanne"), ("louis@exemple.fr", "Louis")):
        platform.applied(platform.volunteer(email, name), mission_id)

    row.get_by_role("link", name="Candidatures").click()
    page.wait_for_url(f"**/espace-structure/missions/{mission_id}/candidatures")
    browse.check("candidatures")
    jeanne = page.locator("li[data-candidature]", has_text="Jeanne")
    louis = page.locator("li[data-candidature]", has_text="Louis")
    jeanne.get_by_role("button", name="Accepter").click()
    expect(page.get_by_text("Candidature acceptée")).to_be_visible()
    expect(jeanne).to_contain_text("jeanne@exemple.fr")  # accepted: her contact details
    louis.get_by_label("Motif du refus").select_option("requirements_not_fulfilled")
    louis.get_by_label("Un mot pour le bénévole").fill("Merci, une autre mission vous attend peut-être.")
    louis.get_by_role("button", name="Refuser").click()
    expect(page.get_by_text("Candidature refusée")).to_be_visible()
    browse.check("candidatures-traitees")
    expect(louis.locator(".fr-badge")).to_have_text("Refusée")

    page.get_by_role("link", name="Retour à mon espace").click()
    platform.until(lambda: page.reload() and "Complète" in (row.text_content() or ""), "the mission full")
    browse.check("mission-complete")


def log_in(browse: Browse, email: str) -> None:
    browse.goto("/connexion")
    browse.page.get_by_label("Adresse e-mail").fill(email)
    browse.page.get_by_label("Mot de passe").fill(PASSWORD)
    browse.page.get_by_role("button", name="Se connecter").click()


def test_a_mission_is_edited_after_changes_requested_its_applications_accepted_together_then_closed(
    platform: Platform, browse: Browse
) -> None:
    page = browse.page
    referent = platform.referent("referent.modifications@exemple.fr", "56")
    manager, organization_id, mission_id = platform.published_mission(referent, "coordination@entraide-vannes.fr")
    draft = platform.call("GET", f"/missions/{mission_id}", manager)
    content = {
        key: draft["content"][key]
        for key in ("title", "description", "domain", "remote", "places", "end_date", "safety")
    }
    content["place"] = {"postal_code": "56000"}
    second = platform.call("POST", f"/organizations/{organization_id}/missions", manager, 201, json=content)
    second_id = second["mission_id"]
    platform.call("POST", f"/missions/{second_id}/submit", manager, 204)
    comment = "Précisez le lieu exact du rendez-vous."
    platform.eventually(
        "POST",
        f"/moderation/missions/{second_id}/decision",
        referent,
        204,
        json={"decision": "request_changes", "comment": comment},
    )
    log_in(browse, "coordination@entraide-vannes.fr")
    page.wait_for_url("**/espace-structure")
    row = page.locator("table tbody tr", has_text="Modifications demandées")
    platform.until(lambda: page.reload() and row.count() == 1, "the changes requested")
    row.get_by_role("link", name="Modifier").click()
    page.wait_for_url(f"**/espace-structure/missions/{second_id}/modification")
    browse.check("mission-modification")
    expect(page.locator("#modifications-demandees")).to_contain_text(comment)
    expect(page.get_by_label("Titre de la mission")).to_have_value(content["title"])
    page.get_by_label("Titre de la mission").fill("X")  # too short: refused next to the field, the rest kept
    page.get_by_label("Adresse").fill("Salle des fêtes, 3 place Maurice Marchais")
    page.get_by_role("button", name="Enregistrer et soumettre").click()
    browse.check("mission-modification-erreur")
    expect(page.locator("#champ-title-messages")).not_to_be_empty()
    expect(page.get_by_label("Adresse")).to_have_value("Salle des fêtes, 3 place Maurice Marchais")
    page.get_by_label("Titre de la mission").fill("Colis alimentaires à la salle des fêtes")
    page.get_by_role("button", name="Enregistrer et soumettre").click()
    page.wait_for_url("**/espace-structure")
    expect(page.get_by_text("Votre mission est modifiée et soumise")).to_be_visible()
    expect(page.locator("table tbody tr", has_text="Colis alimentaires à la salle des fêtes")).to_contain_text(
        "En attente de validation"
    )

    for email, name in (("amelie@exemple.fr", "Amélie"), ("bruno@exemple.fr", "Bruno")):
        platform.applied(platform.volunteer(email, name), mission_id)
    browse.goto(f"/espace-structure/missions/{mission_id}/candidatures")
    page.locator("#acceptations label", has_text="Amélie").click()  # the DSFR's box: its label takes the click
    page.locator("#acceptations label", has_text="Bruno").click()
    page.get_by_role("button", name="Accepter les candidatures cochées").click()
    expect(page.get_by_text("2 candidatures acceptées")).to_be_visible()
    browse.check("candidatures-acceptees-ensemble")
    expect(page.locator("li[data-candidature] .fr-badge", has_text="Acceptée")).to_have_count(2)

    browse.goto(f"/espace-structure/missions/{mission_id}/cloture")
    page.get_by_role("button", name="Terminer la mission").click()
    page.wait_for_url("**/espace-structure")
    expect(page.get_by_text("Votre mission est terminée")).to_be_visible()
    expect(page.locator("table tbody tr", has_text="Distribution de colis alimentaires")).to_contain_text("Terminée")

    browse.goto(f"/espace-structure/missions/{second_id}/annulation")
    page.get_by_role("button", name="Annuler la mission").click()  # no reason: a French error
    browse.check("mission-annulation-erreur")
    expect(page.locator("#champ-reason-messages")).not_to_be_empty()
    page.get_by_label("Pourquoi annulez-vous cette mission ?").fill("La distribution est reportée à janvier.")
    page.get_by_role("button", name="Annuler la mission").click()
    page.wait_for_url("**/espace-structure")
    expect(page.locator("table tbody tr", has_text="Colis alimentaires à la salle des fêtes")).to_contain_text(
        "Annulée"
    )
