"""python -m services.gateway [serve | create-admin EMAIL | replay | dead-letters]: the gateway alone, the first
admin account, a replay of its read models (it has none: its consumer groups carry out commands), or the
platform's dead letters.

The admin's password is read from CIVIQUE_ADMIN_PASSWORD or asked on the terminal: never a default.
create-admin only writes to the gateway's store and leaves: the platform's relay announces the account.
"""

import asyncio
import gc
import getpass
import os
import sys
from collections.abc import Sequence

from services.gateway import service
from services.gateway.domain import check_password
from services.gateway.handlers import Accounts
from shared import geo
from shared.errors import Refusal
from shared.runtime.app import Runtime, run
from shared.runtime.cli import (
    CommandLine,
    add_dead_letters_command,
    add_replay_command,
    add_server_options,
    dead_letters_main,
    fail,
    parse,
)
from shared.runtime.replay import replay_command
from shared.runtime.settings import Settings

TITLE = "Civique — gateway"


def command_line() -> CommandLine:
    parser = CommandLine("python -m services.gateway", description="La passerelle de Civique : l’API publique /api/v1.")
    commands = parser.add_subparsers(dest="command", metavar="COMMANDE", title="commandes")
    serve = commands.add_parser("serve", help="démarre la passerelle (par défaut)")
    add_server_options(serve)
    admin = commands.add_parser(
        "create-admin",
        help="crée le compte administrateur (mot de passe : CIVIQUE_ADMIN_PASSWORD, sinon demandé)",
    )
    admin.add_argument("email", metavar="EMAIL", help="adresse e-mail de l’administrateur")
    add_replay_command(commands)
    add_dead_letters_command(commands)
    return parser


def admin_password(email: str) -> str:
    """From the environment, or typed twice on a terminal; checked before anything is opened."""
    password = os.environ.get("CIVIQUE_ADMIN_PASSWORD")
    if password is None:
        if not sys.stdin.isatty():
            fail("Indiquez le mot de passe dans CIVIQUE_ADMIN_PASSWORD (aucun terminal pour le demander).")
        password = getpass.getpass("Mot de passe de l’administrateur : ")
        if getpass.getpass("Confirmez le mot de passe : ") != password:
            fail("Les deux mots de passe diffèrent : rien n’a été créé.")
    try:
        check_password(password, email=email)
    except Refusal as refusal:
        fail(f"{refusal.detail} Rien n’a été créé.")
    return password


async def create_admin(email: str, password: str) -> str:
    """The admin account's id; the same e-mail and password again finds the same account."""
    settings = Settings()
    runtime = Runtime(settings.model_copy(update={"jwt_secret": "unused", "run_consumers": False}), [service])
    await runtime.open()
    try:
        account = await runtime.context("gateway").component(Accounts).create(email, password, "admin")
        return str(account["id"])
    finally:
        await runtime.close()


def main(argv: Sequence[str] | None = None) -> None:
    options = parse(command_line(), argv)
    if options.command == "replay":
        raise SystemExit(replay_command([service], groups=options.groups))
    if options.command == "dead-letters":
        dead_letters_main(options)
    if options.command == "create-admin":
        if "@" not in options.email:
            fail(f"« {options.email} » n’est pas une adresse e-mail.")
        password = admin_password(options.email)
        try:
            account_id = asyncio.run(create_admin(options.email, password))
        except Refusal as refusal:
            fail(f"{refusal.detail} Rien n’a été créé.")
        print(f"Compte administrateur prêt : {account_id}")
        return
    geo.departments()  # the postal codes' geography, read now rather than by the first sign-up (0.2 s of its loop)
    gc.collect()
    # the modules and the geography live as long as the process: out of the collector's sight, a full
    # collection during a spike scans what requests leave behind (about 1 ms) instead of 160,000 objects
    # (about 100 ms, every request in flight waiting: a p99 of its own)
    gc.freeze()
    run([service], title=TITLE, host=getattr(options, "host", None), port=getattr(options, "port", None))


if __name__ == "__main__":
    main()
