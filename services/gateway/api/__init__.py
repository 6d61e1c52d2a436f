"""The public API (/api/v1): the gateway's own routes (sessions, intake, registrations), then every
operation of the services, relayed by role. Modules: `edge` (who calls, from where, how often,
idempotency), `intake`, `accounts`, `relayed`."""

from fastapi import APIRouter

from services.gateway.api import accounts, intake, relayed

router = APIRouter(prefix="/api/v1")
router.include_router(intake.router)  # first: the sign-up of a spike is matched before any other route
router.include_router(accounts.router)
router.include_router(relayed.router)
ROUTES = relayed.OPERATIONS
