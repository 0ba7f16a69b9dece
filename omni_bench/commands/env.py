"""``omni-bench env create|list``: Python environments for models whose packages clash with omni-bench's."""

from __future__ import annotations

import argparse

HELP = "create and list the Python environments that models run in (worker processes)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="env_command", required=True)
    create = sub.add_parser("create", help="make an environment and install what its model cards list")
    create.add_argument("name", help="environment name (cards refer to it with 'environment: NAME')")
    create.add_argument("--model", "-m", action="append", default=[],
                        help="card to install for (built-in name or card file; repeatable); default: every "
                             "built-in card that names this environment")
    create.add_argument("--python", help="interpreter to base the environment on (default: this one)")
    create.add_argument("--quiet", "-q", action="store_true", help="less pip output")
    create.add_argument("--trust-code", action="store_true",
                        help="let a card file (--model FILE) choose what pip installs; built-in cards need no flag")
    sub.add_parser("list", help="show the environments, what they were made for and which cards use them")


def run(args) -> int:
    from ..errors import OmniBenchError
    from ..models import environments
    from ..models.registry import builtin_cards, find_card
    from ..reporting.text import plain_table

    if args.env_command == "create":
        if args.model:
            cards = [find_card(name) for name in args.model]
            files = [name for name in args.model if name.endswith((".yaml", ".yml"))]
            if files and not args.trust_code:
                raise OmniBenchError(f"{files[0]}: a card file's 'packages' and 'weights_packages' are installed "
                                     "with pip, which runs their code; pass --trust-code if you trust the file")
        else:
            cards = [card for card in map(find_card, sorted(builtin_cards())) if card.environment == args.name]
        python = environments.create(args.name, cards, args.python, args.quiet)
        print(f"environment {args.name!r} ready: {python}  (cards: {', '.join(c.name for c in cards)})")
        return 0
    print(f"environments folder: {environments.envs_root()}  (${environments.ENVS_VARIABLE} moves it)")
    rows = [[env["name"], "ready" if env["exists"] else "missing: omni-bench env create " + env["name"],
             ", ".join(env["manifest"].get("cards", [])) or "-", ", ".join(env["cards"]) or "-"]
            for env in environments.environments()]
    print(plain_table(["name", "state", "made for", "named by built-in cards"], rows))
    return 0
