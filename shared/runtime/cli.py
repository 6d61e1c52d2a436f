"""Command lines of the services, in French: help, exit codes, and a message rather than a traceback
for a user's mistake."""

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:  # at run time these modules import this one
    from shared.runtime.app import Service

USAGE_ERROR, USER_ERROR = 2, 1
SETTINGS_EPILOG = (
    "Réglages par variables d’environnement CIVIQUE_* (voir le README) : CIVIQUE_BACKEND (embedded ou "
    "kafka+mongo), CIVIQUE_DATA_DIR, CIVIQUE_KAFKA_BOOTSTRAP_SERVERS, CIVIQUE_MONGODB_URL, CIVIQUE_HOST, "
    "CIVIQUE_PORT, CIVIQUE_RUN_CONSUMERS…"
)


ARGPARSE_ERRORS = (
    ("the following arguments are required", "arguments manquants"),
    ("unrecognized arguments", "arguments inconnus"),
    ("invalid choice", "choix invalide"),
    ("choose from", "choisir parmi"),
    ("invalid int value", "nombre entier attendu"),
    ("expected one argument", "une valeur est attendue"),
)


class CommandLine(argparse.ArgumentParser):
    """argparse speaking French, whose errors end the program with exit code 2 and no traceback."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("epilog", SETTINGS_EPILOG)
        add_help = kwargs.pop("add_help", True)
        kwargs["add_help"] = False  # ours instead, in French
        super().__init__(*args, **kwargs)
        if add_help:
            self.add_argument("-h", "--help", action="help", help="affiche cette aide et quitte")

    def format_usage(self) -> str:
        return super().format_usage().replace("usage:", "utilisation :", 1)

    def format_help(self) -> str:
        text = super().format_help().replace("usage:", "utilisation :", 1)
        for english, french in (("\noptions:\n", "\noptions :\n"), ("positional arguments:", "arguments :")):
            text = text.replace(english, french)
        return text.replace("\ncommandes:\n", "\ncommandes :\n")

    def error(self, message: str) -> NoReturn:
        for english, french in ARGPARSE_ERRORS:
            message = message.replace(english, french)
        self.print_usage(sys.stderr)
        self.exit(USAGE_ERROR, f"{self.prog} : erreur : {message}\n")


def add_server_options(parser: argparse.ArgumentParser, *, default: Any = None) -> None:
    """--host and --port, which override CIVIQUE_HOST and CIVIQUE_PORT (`default=argparse.SUPPRESS` on a command
    whose parent parser has them too: the command's absent options must not hide the parent's)."""
    parser.add_argument("--host", default=default, help="adresse d’écoute (sinon CIVIQUE_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, default=default, help="port d’écoute (sinon CIVIQUE_PORT, 8000)")


def add_replay_command(commands: "argparse._SubParsersAction[Any]") -> None:
    """The `replay` command of a service: its read models rebuilt from the events while it keeps serving."""
    replay = commands.add_parser(
        "replay",
        help="reconstruit les modèles de lecture à partir des événements, le service restant en ligne",
        description=(
            "Reconstruit les modèles de lecture du service à partir des événements du bus, dans des collections "
            "à part, pendant que le service continue de répondre ; met ses groupes de consommateurs en pause le "
            "temps de rattraper et de basculer, puis les relance. Affiche l’avancement ; code de sortie 1 en cas "
            "d’échec (les modèles en service restent tels quels)."
        ),
    )
    replay.add_argument(
        "--group",
        metavar="GROUPE",
        action="append",
        dest="groups",
        help="ce groupe de consommateurs seulement, option répétable (sinon tous ceux qui ont des modèles)",
    )


def add_dead_letters_command(commands: "argparse._SubParsersAction[Any]") -> None:
    """The `dead-letters` command: list, replay or discard the platform's dead letters (any service's command line
    has it; it works on the whole bus)."""
    letters = commands.add_parser(
        "dead-letters",
        help="liste, rejoue ou écarte les lettres mortes (messages qu’un groupe n’a pas pu traiter)",
        description=(
            "Les lettres mortes de toute la plateforme, dans les topics <topic>.dlq : « list » les affiche avec "
            "l’erreur, le groupe et l’événement ; « replay » renvoie celles en attente vers leur topic (une fois la "
            "cause corrigée : chaque groupe du topic les reçoit, ceux qui les avaient traitées les ignorent) ; "
            "« discard » les règle sans les rejouer. Code de sortie 1 en cas d’échec."
        ),
    )
    letters.add_argument("action", choices=["list", "replay", "discard"], help="list, replay ou discard")
    letters.add_argument(
        "--topic",
        metavar="TOPIC",
        action="append",
        dest="topics",
        help="ce topic seulement (son nom ou celui de ses lettres mortes), option répétable (sinon tous)",
    )
    letters.add_argument(
        "--group",
        metavar="GROUPE",
        action="append",
        dest="groups",
        help="list : les lettres de ce groupe de consommateurs seulement, option répétable",
    )
    letters.add_argument("--all", action="store_true", dest="every", help="list : les lettres réglées aussi")


def dead_letters_main(options: argparse.Namespace) -> NoReturn:
    """Carry out a parsed `dead-letters` command and exit with its code."""
    from shared.runtime.dead_letters import dead_letters_command  # here: it imports the runtime, which imports this

    if options.action != "list" and (options.groups or options.every):
        fail("--group et --all ne valent que pour list : replay et discard prennent toutes les lettres d’un topic.")
    raise SystemExit(dead_letters_command(options.action, options.topics, groups=options.groups, every=options.every))


def fail(message: str) -> NoReturn:
    """End a command on a user's mistake: the French message on stderr, exit code 1."""
    print(message, file=sys.stderr)
    raise SystemExit(USER_ERROR)


def server_command(prog: str, title: str, *, operations: bool = False) -> CommandLine:
    """`prog [--host H] [--port P]`; with `operations` (a process that hosts data), `prog [serve] …` or
    `prog dead-letters …` too."""
    parser = CommandLine(prog, description=f"Démarre {title} : l’API HTTP, ses consommateurs et son relais.")
    add_server_options(parser)
    if operations:
        commands = parser.add_subparsers(dest="command", metavar="COMMANDE", title="commandes")
        serve = commands.add_parser("serve", help="démarre la plateforme (par défaut)")
        add_server_options(serve, default=argparse.SUPPRESS)
        add_dead_letters_command(commands)
    return parser


def service_command(prog: str, title: str) -> CommandLine:
    """`prog [serve] [--host H] [--port P]` (the default), `prog replay [--group G]` or `prog dead-letters …`."""
    parser = CommandLine(
        prog, description=f"Démarre {title} : l’API HTTP, ses consommateurs et son relais ; ou rejoue ses modèles."
    )
    add_server_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMANDE", title="commandes")
    serve = commands.add_parser("serve", help="démarre le service (par défaut)")
    add_server_options(serve, default=argparse.SUPPRESS)
    add_replay_command(commands)
    add_dead_letters_command(commands)
    return parser


def service_main(services: "Sequence[Service]", *, title: str, prog: str, argv: Sequence[str] | None = None) -> None:
    """The command line of `python -m services.<name>`: serve the service, or replay its read models."""
    options = parse(service_command(prog, title), argv)
    from shared.runtime.app import run  # here: both modules import this one
    from shared.runtime.replay import replay_command

    if options.command == "replay":
        raise SystemExit(replay_command(services, groups=options.groups))
    if options.command == "dead-letters":
        dead_letters_main(options)
    run(services, title=title, host=options.host, port=options.port)


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    return parser.parse_args(sys.argv[1:] if argv is None else argv)
