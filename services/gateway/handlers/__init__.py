"""Gateway application layer, by concern: accounts and sessions, the clients of the services, the intake."""

from services.gateway.handlers.accounts import ACCOUNTS, EMAIL_TAKEN, INVITATIONS, Accounts
from services.gateway.handlers.clients import Services, services_of
from services.gateway.handlers.intake import Intake

__all__ = ["ACCOUNTS", "EMAIL_TAKEN", "INVITATIONS", "Accounts", "Intake", "Services", "services_of"]
