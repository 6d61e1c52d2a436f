"""Notifications application layer: the service's handlers (`service`), the rules telling who hears of which
event (`notices`), the delivery log and its sender (`delivery`), the letters (`letters`)."""

from services.notifications.handlers.delivery import DELIVERIES, SEND_BATCH, DeliveryLog
from services.notifications.handlers.letters import TEMPLATES, Letters
from services.notifications.handlers.service import AWAITING, Notifications

__all__ = ["AWAITING", "DELIVERIES", "SEND_BATCH", "TEMPLATES", "DeliveryLog", "Letters", "Notifications"]
