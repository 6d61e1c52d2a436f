"""A volunteer's journey in Chromium, on both backends: home → search → mission → sign-up in steps → pending →
logged in → apply → the application in their space → accepted by the organisation → export → erasure. And the
sign-up's bad input: French errors next to the fields, a summary linked to them, what was typed kept."""

import json
from datetime import date
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import PASSWORD, Browse, Platform

TITLE = "Distribution de colis alimentaires"


@pytest.fixture(scope="module")
def scene(platform: Platform) -> dict[str, Any]:
    """A referent of the Morbihan, an approved organisation of Vannes, and its mission, published."""
    referent = platform.referent("referente.56@exemple.fr", "56")
    manager, organization_id, mission_id = platform.published_mission(referent, "responsable@exemple.fr")
    return {"referent": referent, "manager": manager, "organization_id": organization_id, "mission_id": mission_id}


def fill_profile(browse: Browse, **change: str) -> None:
    fields = {
        "first_name": "Lucie",
        "last_name": "Aubrac",
        "phone": "06 11 22 33 44",
        "birth_date": "1990-07-29",
        "postal_code": "56000",
    } | change
    for name, value in fields.items():
        browse.page.locator(f"#champ-{name}").fill(value)


def tick(page: Page, label: str) -> None:
    """A DSFR checkbox, as a person ticks it: by its label (drawn over the input)."""
    page.locator("label", has_text=label).click()


def test_a_volunteer_finds_a_mission_signs_up_applies_and_leaves(platform: Platform, browse: Browse, scene) -> None:
    page, mission_id = browse.page, scene["mission_id"]

    browse.goto("/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Aidez près de chez vous pendant la crise")
    expect(page.locator(".civique-chiffres")).to_contain_text("avec des places libres")
    page.get_by_label("Code postal ou commune").fill("56000")
    page.get_by_role("button", name="Rechercher").click()
    page.wait_for_url("**/missions?lieu=56000")
    browse.check("recherche")
    expect(page.get_by_role("status")).to_contain_text("autour de Vannes (56000)")
    expect(page.locator("#carte .leaflet-marker-icon")).to_have_count(1)  # the map, from the results' attributes

    page.get_by_role("link", name=TITLE).click()
    page.wait_for_url(f"**/missions/{mission_id}")
    browse.check("mission")
    expect(page.get_by_text("Proposée par Entraide Vannes")).to_be_visible()
    expect(page.get_by_text("2 libres sur 2")).to_be_visible()

    page.get_by_role("link", name="Je n’ai pas de compte : je m’inscris").click()
    page.wait_for_url("**/inscription/compte")
    browse.check("inscription-compte")
    page.get_by_label("Adresse e-mail").fill("lucie.aubrac@exemple.fr")
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Continuer").click()
    page.wait_for_url("**/inscription/profil")
    browse.check("inscription-profil")
    fill_profile(browse)
    page.get_by_role("button", name="Continuer").click()
    page.wait_for_url("**/inscription/engagement")
    browse.check("inscription-engagement")
    tick(page, "Aide alimentaire et d’urgence")
    tick(page, "Le week-end")
    page.get_by_role("button", name="Continuer").click()
    page.wait_for_url("**/inscription/preferences")
    browse.check("inscription-preferences")
    page.get_by_role("button", name="Valider mon inscription").click()

    # the 202 shown honestly, followed by htmx until done; then logged in, back on the mission
    page.wait_for_url(f"**/missions/{mission_id}", timeout=30_000)
    browse.check("connecte-sur-la-mission")
    expect(page.get_by_text("Votre inscription est confirmée")).to_be_visible()
    expect(page.get_by_role("button", name="Se déconnecter")).to_be_visible()

    page.get_by_label("Un mot pour la structure").fill("Disponible le samedi matin.")
    page.get_by_role("button", name="Je propose mon aide").click()
    page.wait_for_url(f"**/missions/{mission_id}/candidature?demande=*")
    browse.check("candidature-en-cours")
    expect(page.get_by_role("heading", name="Candidature envoyée")).to_be_visible(timeout=30_000)
    browse.check("candidature-envoyee")

    page.get_by_role("link", name="Voir mes candidatures").click()
    page.wait_for_url("**/mon-espace")
    browse.check("mon-espace")
    row = page.locator("#candidatures tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(TITLE)
    expect(row).to_contain_text("En attente de réponse")

    # the organisation accepts, through the API
    applications = platform.call("GET", f"/missions/{mission_id}/applications", scene["manager"])
    platform.call("POST", f"/missions/{mission_id}/applications/{applications[0]['id']}/accept", scene["manager"], 204)
    platform.until(
        lambda: page.reload() and "Acceptée" in (row.text_content() or ""), "the accepted application in my space"
    )
    browse.check("mon-espace-acceptee")

    with page.expect_download() as download:
        page.get_by_role("link", name="Télécharger mes données").click()
    exported = json.loads(download.value.path().read_text())
    assert download.value.suggested_filename == f"civique-mes-donnees-{date.today():%Y-%m-%d}.json"
    assert exported["profile"]["email"] == "lucie.aubrac@exemple.fr"
    assert [a["status"] for a in exported["applications"]] == ["accepted"]

    page.get_by_role("link", name="Supprimer mon compte").click()
    page.wait_for_url("**/mon-espace/suppression")
    browse.check("suppression")
    page.get_by_role("button", name="Supprimer définitivement mon compte").click()
    page.wait_for_url(platform.url + "/")
    browse.check("compte-supprime")
    expect(page.get_by_text("Votre compte et vos données personnelles sont supprimés")).to_be_visible()
    expect(page.get_by_role("link", name="Se connecter")).to_be_visible()
    gone = platform.api.post("/auth/login", json={"email": "lucie.aubrac@exemple.fr", "password": PASSWORD})
    assert gone.status_code == 401


def test_bad_input_in_the_sign_up_shows_french_errors_and_keeps_what_was_typed(browse: Browse) -> None:
    page = browse.page
    browse.goto("/inscription")
    page.get_by_label("Adresse e-mail").fill("pas-une-adresse")
    page.get_by_label("Mot de passe").fill("azerty")
    page.get_by_role("button", name="Continuer").click()
    browse.check("inscription-erreur-adresse")
    expect(page.locator("#champ-email-messages")).to_have_text("Adresse e-mail invalide.")
    expect(page.get_by_label("Adresse e-mail")).to_have_value("pas-une-adresse")

    page.get_by_label("Adresse e-mail").fill("paul.langevin@exemple.fr")
    page.get_by_label("Mot de passe").fill("azerty")  # too short: the gateway says so at the end
    page.get_by_role("button", name="Continuer").click()
    page.wait_for_url("**/inscription/profil")
    ten_years_ago = date(date.today().year - 10, 1, 1).isoformat()
    fill_profile(browse, first_name="Paul", phone="12", birth_date=ten_years_ago, postal_code="99999")
    page.get_by_role("button", name="Continuer").click()
    browse.check("inscription-erreurs-profil")
    summary = page.locator("#erreurs")
    expect(summary).to_contain_text("Le formulaire contient 3 erreurs")
    expect(page.locator("#champ-phone-messages")).to_have_text("Indiquez un numéro de mobile français (06 ou 07).")
    expect(page.locator("#champ-birth_date-messages")).to_have_text("Il faut avoir au moins 16 ans pour s’engager.")
    expect(page.locator("#champ-postal_code-messages")).to_contain_text("ne correspond à aucune commune")
    expect(page.get_by_label("Prénom")).to_have_value("Paul")  # what was typed stays
    expect(page.get_by_label("Téléphone mobile")).to_have_value("12")
    summary.get_by_role("link", name="Téléphone mobile : Indiquez un numéro de mobile français (06 ou 07).").click()
    expect(page.get_by_label("Téléphone mobile")).to_be_focused()

    fill_profile(browse, first_name="Paul", last_name="Langevin")
    page.get_by_role("button", name="Continuer").click()
    page.wait_for_url("**/inscription/engagement")
    page.get_by_role("button", name="Continuer").click()  # nothing ticked
    expect(page.locator("#champ-domains-messages")).to_have_text("Il manque des éléments.")
    tick(page, "Lien avec les personnes isolées")
    tick(page, "En soirée")
    page.get_by_role("button", name="Continuer").click()
    page.wait_for_url("**/inscription/preferences")
    page.get_by_role("button", name="Valider mon inscription").click()

    # the gateway refuses the password: back on the first step, its words next to the field
    expect(page.get_by_role("heading", name="Votre compte")).to_be_visible()
    browse.check("inscription-mot-de-passe-refuse")
    expect(summary).to_contain_text("Le mot de passe doit compter au moins 10 caractères.")
    expect(page.get_by_label("Adresse e-mail")).to_have_value("paul.langevin@exemple.fr")


def test_without_javascript_a_sign_up_is_followed_by_a_link_then_logged_in(browse_without_scripts: Browse) -> None:
    browse = browse_without_scripts
    page = browse.page
    browse.goto("/inscription")
    page.get_by_label("Adresse e-mail").fill("marie.curie@exemple.fr")
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Continuer").click()
    fill_profile(browse, first_name="Marie", last_name="Curie", phone="07 12 34 56 78")
    page.get_by_role("button", name="Continuer").click()
    tick(page, "Garde d’enfants")
    tick(page, "En semaine, en journée")
    page.get_by_role("button", name="Continuer").click()
    page.get_by_role("button", name="Valider mon inscription").click()
    browse.check("inscription-suivi-sans-javascript")
    for _ in range(100):  # without htmx, the person looks again by following the link
        if "/inscription/suivi" not in page.url:
            break
        expect(page.get_by_text("Votre inscription est en cours")).to_be_visible()
        page.wait_for_timeout(200)
        page.get_by_role("link", name="Vérifier où en est mon inscription").click()
    page.wait_for_url("**/mon-espace")
    browse.check("mon-espace-sans-javascript")
    expect(page.get_by_text("Bonjour Marie !")).to_be_visible()


def test_a_volunteer_changes_their_profile_a_bad_phone_first(platform: Platform, browse: Browse) -> None:
    page = browse.page
    platform.volunteer("claire.profil@exemple.fr", "Claire")
    browse.goto("/connexion")
    page.get_by_label("Adresse e-mail").fill("claire.profil@exemple.fr")
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url("**/mon-espace")
    page.get_by_role("link", name="Modifier mon profil").click()
    page.wait_for_url("**/mon-espace/profil")
    browse.check("mon-profil")
    expect(page.get_by_label("Prénom")).to_have_value("Claire")
    page.get_by_label("Nom", exact=True).fill("Durand")
    page.get_by_label("Téléphone mobile").fill("12")
    page.get_by_role("button", name="Enregistrer mon profil").click()
    browse.check("mon-profil-erreur")
    expect(page.locator("#champ-phone-messages")).to_have_text("Indiquez un numéro de mobile français (06 ou 07).")
    expect(page.get_by_label("Nom", exact=True)).to_have_value("Durand")  # what was typed stays
    expect(page.get_by_label("Téléphone mobile")).to_have_value("12")
    page.get_by_label("Téléphone mobile").fill("07 98 76 54 32")
    page.get_by_role("button", name="Enregistrer mon profil").click()
    page.wait_for_url("**/mon-espace")
    expect(page.get_by_text("Votre profil est enregistré.")).to_be_visible()
    expect(page.locator(".fr-card", has_text="Mon profil")).to_contain_text("Claire Durand")
