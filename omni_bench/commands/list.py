"""``omni-bench list tasks|suites|models``: reads YAML only, imports no model package."""

from __future__ import annotations

import argparse

from ..errors import OmniBenchError

HELP = "list tasks, suites or models (imports no model code)"


def add_arguments(listing: argparse.ArgumentParser) -> None:
    listing.add_argument("what", choices=["tasks", "suites", "models"])
    listing.add_argument("--data-dir", help="reference data root, for item counts of data-backed tasks")


def run(args) -> int:
    from .. import task_registry

    if args.what == "tasks":
        for spec in task_registry.all_tasks(args.tasks_dir).values():
            print(f"{spec.name:<20} v{spec.version}  {','.join(spec.suites):<28} {spec.level_of_theory}")
    elif args.what == "suites":
        counts = _item_counts(task_registry.all_tasks(args.tasks_dir), args.data_dir)
        for suite, names in task_registry.suites(args.tasks_dir).items():
            print(f"{suite:<20} {', '.join(f'{n} ({counts[n]})' for n in names)}")
    else:
        from ..models.registry import builtin_cards, find_card, plugin_names

        for name in sorted(builtin_cards()):
            card = find_card(name)
            channels = f"channels: {', '.join(card.channels)}" if card.channels else card.level_of_theory
            print(f"{name:<16} {channels}")
        for name in plugin_names():
            print(f"{name:<16} (plug-in)")
    return 0


def _item_counts(tasks: dict, data_dir: str | None) -> dict[str, str]:
    """Items per task, read through the loaders; '?' where the reference data is not there."""
    from .. import data, plugins

    root, origin = data.resolve_data_root(data_dir)
    counts = {}
    for name, spec in tasks.items():
        try:
            files = data.task_files(spec, root, origin)
            counts[name] = str(len(plugins.load("loader", spec.loader).load(files, spec.loader_params)))
        except OmniBenchError:
            counts[name] = "?: data missing"
    return counts


