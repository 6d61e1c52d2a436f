"""python -m services.gateway [create-admin EMAIL]: the gateway alone, or the first admin account.

The admin's password is read from CIVIQUE_ADMIN_PASSWORD or asked on the terminal: never a default.
"""

import asyncio
import getpass
import os
import sys

from services.gateway import service
from services.gateway.handlers import Accounts
from shared.runtime.app import Runtime, serve
from shared.runtime.settings import Settings


async def create_admin(email: str) -> None:
    password = os.environ.get("CIVIQUE_ADMIN_PASSWORD") or getpass.getpass("Mot de passe de l’administrateur : ")
    settings = Settings()
    runtime = Runtime(settings.model_copy(update={"jwt_secret": settings.jwt_secret or "unused"}), [service])
    await runtime.start()
    try:
        account = await Accounts(runtime.context("gateway")).create(email, password, "admin")
        print(f"admin account {account['id']} ready")
    finally:
        await runtime.stop()


if __name__ == "__main__":
    if sys.argv[1:2] == ["create-admin"] and len(sys.argv) == 3:
        asyncio.run(create_admin(sys.argv[2]))
    else:
        serve([service], title="Civique — gateway")
