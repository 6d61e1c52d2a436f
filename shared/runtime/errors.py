"""One error format for every HTTP answer: a stable machine `code` and a French `detail` for people."""

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from shared.runtime.ports import ConcurrencyError

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


class Problem(Exception):
    """A refusal meant for the client: status, stable code, French message, optional field errors."""

    def __init__(self, status: int, code: str, detail: str, *, fields: dict[str, str] | None = None) -> None:
        super().__init__(code)
        self.status, self.code, self.detail, self.fields = status, code, detail, fields or {}


def problem_response(status: int, code: str, detail: str, fields: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"status": status, "code": code, "detail": detail}
    if fields:
        body["fields"] = fields
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def install_error_handlers(app: FastAPI) -> None:
    """Map every failure to the problem format; a 500 only for our own bugs, logged with the correlation id."""

    @app.exception_handler(Problem)
    async def on_problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.code, exc.detail, exc.fields)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = {".".join(str(p) for p in e["loc"] if p != "body") or "body": e["msg"] for e in exc.errors()}
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
