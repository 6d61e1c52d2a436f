"""The website's forms: their fields as people read them, and what each step or filter accepts, checked with the
API contract's own models so that a field refused here is refused there in the same words."""

from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urlencode

from pydantic import ValidationError

from shared import geo
from shared.contracts.matching import DEFAULT_RADIUS_KM, MissionSearch
from shared.contracts.volunteers import ProfileChanges, VolunteerProfile
from shared.events.vocabulary import DOMAIN_LABELS, DOMAINS
from shared.runtime.errors import field_message
from shared.web.forms import Form, Submitted

# ---- sign-up, in steps (JeVeuxAider's: account, profile, domains and availability, preferences) ----


@dataclass(frozen=True)
class Step:
    slug: str
    title: str
    fields: tuple[str, ...]


STEPS = (
    Step("compte", "Votre compte", ("email", "password")),
    Step("profil", "Votre profil", ("first_name", "last_name", "phone", "birth_date", "postal_code")),
    Step("engagement", "Vos domaines et disponibilités", ("domains", "availability")),
    Step("preferences", "Vos préférences", ("mode", "max_distance_km", "health_risk", "visible_to_organizations")),
)
LISTS = ("domains", "availability")
TICKED = ("health_risk", "visible_to_organizations")
SIGN_UP_LABELS = {
    "email": "Adresse e-mail",
    "password": "Mot de passe",
    "first_name": "Prénom",
    "last_name": "Nom",
    "phone": "Téléphone mobile",
    "birth_date": "Date de naissance",
    "postal_code": "Code postal",
    "domains": "Les domaines où vous voulez aider",
    "availability": "Vos disponibilités",
    "mode": "Où voulez-vous aider ?",
    "max_distance_km": "Distance maximale (en km)",
    "health_risk": "Je présente un risque pour ma santé (maladie chronique, grossesse…)",
    "visible_to_organizations": "Les structures peuvent me proposer des missions",
}
AVAILABILITY = (("weekdays", "En semaine, en journée"), ("evenings", "En soirée"), ("weekends", "Le week-end"))
MODES = (("both", "Sur place ou à distance"), ("on_site", "Sur place seulement"), ("remote", "À distance seulement"))
DOMAIN_CHOICES = tuple((domain, DOMAIN_LABELS[domain].capitalize()) for domain in DOMAINS)
SIGN_UP_DEFAULTS: dict[str, Any] = {"mode": "both", "max_distance_km": "10", "visible_to_organizations": "oui"}


def step_of(slug: str) -> int | None:
    """The index of the step named `slug`."""
    return next((i for i, step in enumerate(STEPS) if step.slug == slug), None)


def step_values(step: Step, submitted: Submitted) -> dict[str, Any]:
    """What a step's form sent, as the draft keeps it (a box not ticked is "non")."""
    values: dict[str, Any] = {}
    for name in step.fields:
        if name in LISTS:
            values[name] = submitted.getlist(name)
        elif name in TICKED:
            values[name] = "oui" if submitted.get(name) == "oui" else "non"
        else:
            values[name] = submitted.raw(name) if name == "password" else submitted.get(name)
    return values


def sign_up_form(values: dict[str, Any]) -> Form:
    return Form(SIGN_UP_LABELS, {**SIGN_UP_DEFAULTS, **values})


def profile_of(values: dict[str, Any]) -> dict[str, Any]:
    """The draft as the API's VolunteerProfile reads it."""
    profile = {name: values.get(name) for step in STEPS[1:] for name in step.fields}
    profile["email"] = values.get("email")
    for name in TICKED:
        profile[name] = values.get(name, SIGN_UP_DEFAULTS.get(name, "non")) == "oui"
    return {name: value for name, value in profile.items() if value not in (None, "")}


def check_steps(form: Form, last: int) -> int | None:
    """The profile checked with the API's own model: the errors of the fields of steps up to `last` go on the
    form; the first step with one, or None."""
    try:
        VolunteerProfile.model_validate(profile_of(form.values))
    except ValidationError as invalid:
        asked = {name for step in STEPS[: last + 1] for name in step.fields}
        for error in invalid.errors():
            name = str(error["loc"][0]) if error["loc"] else ""
            if name in asked:
                form.errors.setdefault(name, field_message(error))
    if last == 0 and not form.value("password"):
        form.errors["password"] = "Ce champ est obligatoire."
    return next((i for i, step in enumerate(STEPS) if any(name in form.errors for name in step.fields)), None)


def field_of_sign_up(api_field: str) -> str:
    """`volunteer.birth_date` → `birth_date`, `password` → `password`."""
    return api_field.removeprefix("volunteer.").split(".")[0]


# ---- a volunteer's profile, changed in their space ----

PROFILE_FIELDS = (
    "first_name",
    "last_name",
    "phone",
    "postal_code",
    "domains",
    "availability",
    "mode",
    "max_distance_km",
    "health_risk",
    "visible_to_organizations",
)
PROFILE_LABELS = {name: SIGN_UP_LABELS[name] for name in PROFILE_FIELDS}
PROFILE = Step("profil", "Votre profil", PROFILE_FIELDS)  # read as a sign-up step is (a box not ticked is "non")


def profile_values(profile: Any) -> dict[str, Any]:
    """A profile as the form shows it (a VolunteerProfileView)."""
    values: dict[str, Any] = {name: getattr(profile, name) for name in PROFILE_FIELDS if name not in TICKED}
    values |= {name: "oui" if getattr(profile, name) else "non" for name in TICKED}
    values |= {name: list(values[name] or []) for name in LISTS}
    return {name: "" if value is None else value for name, value in values.items()}


def changes_of(values: dict[str, Any]) -> dict[str, Any]:
    """The form as the API's ProfileChanges reads it (every field sent: what did not change stays the same)."""
    changes = {name: values.get(name) for name in PROFILE_FIELDS if name not in TICKED}
    changes |= {name: values.get(name) == "oui" for name in TICKED}
    return {name: value for name, value in changes.items() if value not in (None, "")}


def check_profile(form: Form) -> dict[str, Any]:
    """The changes checked with the API's own models (the sign-up's rules for the phone and the postal code)."""
    changes = changes_of(form.values)
    for name in PROFILE_FIELDS:
        if name not in TICKED and name != "max_distance_km" and not form.values.get(name):
            form.errors[name] = "Ce champ est obligatoire."
    for model in (ProfileChanges, VolunteerProfile):
        try:
            model.model_validate(changes)
        except ValidationError as invalid:
            for error in invalid.errors():
                name = str(error["loc"][0]) if error["loc"] else ""
                if name in form.labels:
                    form.errors.setdefault(name, field_message(error))
    return changes


# ---- mission search: the filters the URL holds (shareable, the back button works) ----

RADII = (5, 10, 20, 35, 50, 100)
REMOTE_CHOICES = (("", "Sur place et à distance"), ("non", "Sur place seulement"), ("oui", "À distance seulement"))
SEARCH_LABELS = {
    "lieu": "Code postal ou commune",
    "rayon": "Rayon",
    "domaine": "Domaines",
    "a_distance": "Sur place ou à distance",
    "du": "Disponible à partir du",
    "au": "Jusqu’au",
}
PER_PAGE = 12


@dataclass
class Filters:
    """The search page's filters, from the query string; `form` holds their values and errors."""

    form: Form
    query: MissionSearch
    place: geo.Commune | None = None
    kept: dict[str, Any] = field(default_factory=dict)

    def url(self, page: int) -> str:
        """This search's address at `page`."""
        return "/missions?" + urlencode({**self.kept, "page": page}, doseq=True)


def filters_of(params: dict[str, list[str]]) -> Filters:
    """The filters of a search page's address; a field at fault is set aside with its error, the search goes on."""
    submitted = Submitted((name, value) for name, values in params.items() for value in values)
    form = Form(SEARCH_LABELS, {name: submitted.get(name) for name in SEARCH_LABELS} | {"domaine": []})
    form.values["domaine"] = [d for d in submitted.getlist("domaine") if d in DOMAINS]
    place = None
    if form.value("lieu"):
        place = geo.place_named(form.value("lieu"))
        if place is None:
            form.errors["lieu"] = "Nous ne trouvons pas ce lieu : indiquez un code postal ou le nom d’une commune."
    radius = form.value("rayon")
    if not radius.isdigit() or int(radius) not in RADII:
        form.values["rayon"] = str(int(DEFAULT_RADIUS_KM))
    start, end = (dated(form, name) for name in ("du", "au"))
    if start and end and end < start:
        form.errors["au"] = "Cette date doit suivre la date de début."
        end = None
    page = submitted.get("page")
    query = MissionSearch(
        postal_code=place.postal_code if place else None,
        radius_km=float(form.value("rayon")),
        domain=form.values["domaine"] or None,  # checked against DOMAINS above
        remote={"oui": True, "non": False}.get(form.value("a_distance")),
        start=start,
        end=end,
        page=min(int(page), 1000) if page.isdigit() and int(page) >= 1 else 1,
        per_page=PER_PAGE,
    )
    kept = {name: value for name, value in form.values.items() if value not in ("", [], None)}
    return Filters(form, query, place, kept)


def dated(form: Form, name: str) -> date | None:
    value = form.value(name)
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        form.errors[name] = "Indiquez une date au format JJ/MM/AAAA."
        return None


# ---- an organisation: its registration, its missions ----

ORGANIZATION_LABELS = {
    "email": "Votre adresse e-mail",
    "password": "Choisissez un mot de passe",
    "name": "Nom de la structure",
    "kind": "Type de structure",
    "establishment_type": "Type d’établissement",
    "siret": "Numéro SIRET",
    "rna": "Numéro RNA (associations)",
    "postal_code": "Code postal",
    "description": "Présentation de la structure",
}
ORGANIZATION_KINDS = (
    ("association", "Association"),
    ("network_antenna", "Antenne d’un réseau national"),
    ("local_authority", "Collectivité (mairie, CCAS…)"),
    ("public_establishment", "Établissement public"),
    ("other_public_service", "Autre service public"),
)
ESTABLISHMENT_TYPES = (
    ("school", "Scolaire"),
    ("medical", "Médical"),
    ("social", "Social"),
    ("medico_social", "Médico-social"),
)
ORGANIZATION_FIELDS = ("name", "kind", "establishment_type", "siret", "rna", "postal_code", "description")


def organization_of(values: dict[str, Any]) -> dict[str, Any]:
    """The form as the API's OrganizationProfile reads it (empty fields left out)."""
    return {name: values[name] for name in ORGANIZATION_FIELDS if values.get(name)}


def field_of_registration(api_field: str) -> str | None:
    """`organization.siret` → `siret`, `account.email` → `email`; a profile-wide refusal goes to the SIRET."""
    name = api_field.removeprefix("organization.").removeprefix("account.")
    return {"organization": "siret", "body": None}.get(name, name)


MISSION_LABELS = {
    "title": "Titre de la mission",
    "description": "Description",
    "domain": "Domaine",
    "remote": "La mission se fait",
    "address": "Adresse",
    "postal_code": "Code postal du lieu",
    "places": "Nombre de bénévoles recherchés",
    "start_date": "Début",
    "end_date": "Fin",
    "schedule": "Horaires",
    "distancing": "La distanciation est respectée",
    "protective_equipment": "Des équipements de protection sont fournis",
    "supervision": "Les bénévoles sont encadrés sur place",
    "safety_details": "Précisions sur la sécurité",
    "open_to_minors": "Ouverte aux mineurs de 16 ans et plus",
}
REMOTE_OR_NOT = (("non", "Sur place"), ("oui", "À distance"))
MISSION_TICKED = ("distancing", "protective_equipment", "supervision", "open_to_minors")
MISSION_STATES = {
    "draft": ("Brouillon", "info"),
    "submitted": ("En attente de validation", "new"),
    "changes_requested": ("Modifications demandées", "warning"),
    "refused": ("Refusée", "error"),
    "validated": ("Validée", "success"),
    "published": ("En ligne", "success"),
    "filled": ("Complète", "success"),
    "closed": ("Terminée", "info"),
    "cancelled": ("Annulée", "warning"),
}
ORGANIZATION_STATES = {
    "pending": ("En attente de validation", "new"),
    "approved": ("Validée", "success"),
    "rejected": ("Refusée", "error"),
}
CANCEL_LABELS = {"reason": "Pourquoi annulez-vous cette mission ?"}
EDITABLE = ("draft", "changes_requested")  # the missions' states where their content may change
CLOSABLE = ("validated", "published", "filled")
CANCELLABLE = ("draft", "submitted", "changes_requested", "validated", "published", "filled")
REFUSAL_REASONS = (
    ("requirements_not_fulfilled", "Les prérequis de la mission ne sont pas remplis"),
    ("change_mind", "Nos besoins ont changé"),
    ("mission_closed", "La mission est terminée"),
    ("other", "Une autre raison"),
)


def mission_values(submitted: Submitted) -> dict[str, Any]:
    values: dict[str, Any] = {name: submitted.get(name) for name in MISSION_LABELS if name not in MISSION_TICKED}
    values |= {name: "oui" if submitted.get(name) == "oui" else "non" for name in MISSION_TICKED}
    return values


def mission_of(values: dict[str, Any]) -> dict[str, Any]:
    """The form as the API's MissionInput reads it: a place and safety conditions when on site."""
    remote = values.get("remote") == "oui"
    mission: dict[str, Any] = {
        "title": values.get("title"),
        "description": values.get("description"),
        "domain": values.get("domain") or None,
        "remote": remote,
        "places": values.get("places") or None,
        "start_date": values.get("start_date") or None,
        "end_date": values.get("end_date") or None,
        "schedule": values.get("schedule") or None,
        "open_to_minors": values.get("open_to_minors") == "oui",
    }
    if not remote:
        mission["place"] = {"address": values.get("address") or None, "postal_code": values.get("postal_code") or ""}
        mission["safety"] = {
            name: values.get(name) == "oui" for name in ("distancing", "protective_equipment", "supervision")
        }
        mission["safety"]["details"] = values.get("safety_details") or None
    return {name: value for name, value in mission.items() if value is not None}


def field_of_mission(api_field: str) -> str:
    """`place.postal_code` → `postal_code`, `safety` → `distancing`."""
    name = api_field.removeprefix("place.").removeprefix("safety.")
    return {"place": "postal_code", "safety": "distancing", "details": "safety_details"}.get(name, name)


def mission_form_values(content: Any) -> dict[str, Any]:
    """A mission's content (MissionContent) as its form shows it, to edit it."""
    place, safety = content.place, content.safety
    values: dict[str, Any] = {
        "title": content.title,
        "description": content.description,
        "domain": content.domain,
        "remote": "oui" if content.remote else "non",
        "address": place.address if place and place.address else "",
        "postal_code": place.postal_code if place else "",
        "places": str(content.places),
        "start_date": content.start_date.isoformat() if content.start_date else "",
        "end_date": content.end_date.isoformat() if content.end_date else "",
        "schedule": content.schedule or "",
        "safety_details": safety.details if safety and safety.details else "",
        "open_to_minors": "oui" if content.open_to_minors else "non",
    }
    for name in ("distancing", "protective_equipment", "supervision"):
        values[name] = "oui" if safety is None or getattr(safety, name) else "non"
    return values
