"""One error format for every HTTP answer: a stable machine `code` and a French `detail` for people."""

from collections.abc import Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from shared.contracts import REFUSED
from shared.errors import Conflict, Forbidden, Gone, Invalid, LimitReached, NotFound, Refusal, Unauthenticated
from shared.runtime.ports import ConcurrencyError, Unavailable
from shared.runtime.problems import Problem

log = structlog.get_logger("civique.http")

HTTP_DETAILS = {
    400: ("bad_request", "La requête est mal formée."),
    401: ("unauthenticated", "Vous devez être connecté."),
    403: ("forbidden", "Vous n’avez pas le droit de faire cette action."),
    404: ("not_found", "Cette ressource est introuvable."),
    405: ("method_not_allowed", "Cette méthode n’est pas permise ici."),
    413: ("payload_too_large", "La requête est trop volumineuse."),
    415: ("unsupported_media_type", "Le format de la requête n’est pas pris en charge."),
    429: ("too_many_requests", "Trop de requêtes : réessayez dans un instant."),
}


FIELD_MESSAGES = {
    "missing": "Ce champ est obligatoire.",
    "extra_forbidden": "Ce champ n’est pas attendu.",
    "string_type": "Un texte est attendu.",
    "string_too_short": "Ce texte est trop court.",
    "string_too_long": "Ce texte est trop long.",
    "string_pattern_mismatch": "Le format n’est pas valide.",
    "literal_error": "Cette valeur ne fait pas partie des choix possibles.",
    "enum": "Cette valeur ne fait pas partie des choix possibles.",
    "int_parsing": "Un nombre entier est attendu.",
    "int_type": "Un nombre entier est attendu.",
    "float_parsing": "Un nombre est attendu.",
    "bool_parsing": "Vrai ou faux est attendu.",
    "bool_type": "Vrai ou faux est attendu.",
    "greater_than_equal": "Cette valeur est trop petite.",
    "less_than_equal": "Cette valeur est trop grande.",
    "too_short": "Il manque des éléments.",
    "too_long": "Il y a trop d’éléments.",
    "date_parsing": "Une date au format AAAA-MM-JJ est attendue.",
    "date_from_datetime_parsing": "Une date au format AAAA-MM-JJ est attendue.",
    "json_invalid": "Le corps de la requête n’est pas du JSON valide.",
    "model_type": "Un objet est attendu.",
    "dict_type": "Un objet est attendu.",
    "list_type": "Une liste est attendue.",
    "uuid_parsing": "Un identifiant est attendu.",
}


STATUS_OF_REFUSAL: dict[type[Refusal], int] = {
    Invalid: 422,
    NotFound: 404,
    Forbidden: 403,
    Conflict: 409,
    Gone: 410,
    LimitReached: 429,
    Unauthenticated: 401,
}


def status_of(refusal: Refusal) -> int:
    """The HTTP status of a refusal of the domain: the one place where kinds meet statuses."""
    for kind in type(refusal).__mro__:
        if kind in STATUS_OF_REFUSAL:
            return STATUS_OF_REFUSAL[kind]
    return 400


def field_name(location: tuple[int | str, ...]) -> str:
    """`volunteer.domains.0` for a field of the body, `body` for the body as a whole."""
    return ".".join(str(part) for part in location if part != "body") or "body"


def field_message(error: Mapping[str, Any]) -> str:
    """The French message of one field error: ours as written, pydantic's by its type."""
    if error["type"] == REFUSED:
        return str(error["msg"])
    return FIELD_MESSAGES.get(error["type"], "Valeur invalide.")


def problem_response(
    status: int, code: str, detail: str, fields: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"status": status, "code": code, "detail": detail}
    if fields:
        body["fields"] = fields
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Map every failure to the problem format; a 500 only for our own bugs, logged with the correlation id."""

    @app.exception_handler(Problem)
    async def on_problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.code, exc.detail, exc.fields, exc.headers)

    @app.exception_handler(Unavailable)
    async def on_unavailable(_: Request, exc: Unavailable) -> JSONResponse:
        log.warning("unavailable", error_type=type(exc).__name__)
        return problem_response(
            503,
            "service_unavailable",
            "Le service est momentanément indisponible : réessayez dans un instant.",
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Refusal)
    async def on_refusal(_: Request, exc: Refusal) -> JSONResponse:
        return problem_response(status_of(exc), exc.code, exc.detail, exc.fields)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e["type"] == "json_invalid" for e in errors):  # its location is a character offset, not a field
            return problem_response(
                400, "malformed_json", FIELD_MESSAGES["json_invalid"], {"body": FIELD_MESSAGES["json_invalid"]}
            )
        fields = {field_name(e["loc"]): field_message(e) for e in errors}
        return problem_response(422, "invalid_request", "Certaines informations sont manquantes ou invalides.", fields)

    @app.exception_handler(ConcurrencyError)
    async def on_conflict(_: Request, __: ConcurrencyError) -> JSONResponse:
        return problem_response(
            409, "conflict", "Quelqu’un a modifié cette ressource en même temps que vous : rechargez et réessayez."
        )

    @app.exception_handler(HTTPException)
    async def on_http(_: Request, exc: HTTPException) -> JSONResponse:
        code, detail = HTTP_DETAILS.get(exc.status_code, ("http_error", "La requête n’a pas abouti."))
        return problem_response(exc.status_code, code, detail)

    @app.exception_handler(Exception)
    async def on_bug(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", error_type=type(exc).__name__)
        return problem_response(500, "internal_error", "Une erreur inattendue est survenue. Réessayez plus tard.")
