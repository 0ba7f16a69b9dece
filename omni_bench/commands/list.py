"""``omni-bench list tasks|suites|models``: reads YAML only, imports no model package and reads no data file."""

from __future__ import annotations

import argparse

from ..arguments import path_argument
from ..errors import OmniBenchError

HELP = "list tasks, suites or models (imports no model code, reads no data)"


def add_arguments(listing: argparse.ArgumentParser) -> None:
    listing.add_argument("what", choices=["tasks", "suites", "models"])
    listing.add_argument("--count", action="store_true",
                         help="suites: count every task's items through its loader (reads the reference data) "
                              "instead of showing the counts its task file declares")
    listing.add_argument("--data-dir", type=path_argument, help="reference data root, for --count")
    listing.add_argument("--details", nargs="?", const="", metavar="MODEL",
                         help="models: each card in full (channels, weights, environment, licence, provenance), "
                              "or only MODEL's")


def run(args) -> int:
    from .. import task_registry

    if args.what == "tasks":
        tasks = task_registry.all_tasks(args.tasks_dir)
        rows = [[spec.name, f"v{spec.version}", ",".join(spec.suites), spec.level_of_theory]
                for spec in tasks.values()]
        broken = task_registry.broken_tasks(args.tasks_dir)
        rows += [[name, "BROKEN", "", error] for name, error in sorted(broken.items())]
        print(aligned(rows))
    elif args.what == "suites":
        tasks = task_registry.all_tasks(args.tasks_dir)
        counts = _counted(tasks, args.data_dir) if args.count else {n: _declared(s) for n, s in tasks.items()}
        rows = [[suite, ", ".join(f"{n} ({counts[n]})" for n in names)]
                for suite, names in task_registry.suites(args.tasks_dir).items()]
        print(aligned(rows))
        if not args.count and any(s.counts is None for s in tasks.values()):
            print("\n?: the task file declares no counts; 'omni-bench list suites --count' reads the data to count")
        broken = task_registry.broken_tasks(args.tasks_dir)
        if broken:
            print(f"\nbroken task files (see: omni-bench list tasks): {', '.join(sorted(broken))}")
    elif args.details is not None:
        print(model_details(args.details))
    else:
        from ..models.registry import builtin_cards, find_card, plugin_names

        rows = []
        for name in sorted(builtin_cards()):
            card = find_card(name)
            channels = ", ".join(c + (" (default)" if c == card.default_channel else "") for c in card.channels)
            rows.append([name, f"channels: {channels}" if channels else card.level_of_theory])
        rows += [[name, "(plug-in)"] for name in plugin_names()]
        print(aligned(rows))
    return 0


def model_details(only: str = "") -> str:
    """Each card (or the one named ``only``) as the facts a user needs before running it."""
    from ..models.registry import builtin_cards, find_card

    names = [only] if only else sorted(builtin_cards())
    blocks = []
    for name in names:
        card = find_card(name)
        lines = [f"{card.name}: {card.description.strip()}"]
        if card.channels:
            lines.append("  channels (level of theory; training data; D3 functional for +d3):")
            lines += [f"    {c}{' (default)' if c == card.default_channel else ''}: {i.level_of_theory}; "
                      f"{i.training_data or '-'}; {i.d3_functional or 'no +d3'}" for c, i in card.channels.items()]
        else:
            lines.append(f"  level of theory: {card.level_of_theory}; D3 functional for +d3: "
                         f"{card.d3_functional or 'none'}")
        facts = [("trained with dispersion", "yes" if card.trained_with_dispersion else "no"),
                 ("training data", ", ".join(card.training_data)), ("energy convention", card.energy_convention),
                 ("weights", card.weights.strip()),
                 ("download", card.download and f"{card.download.url} (cached at {card.download_cache()})"),
                 ("local weights", card.checkpoint_env and f"{card.checkpoint_env}=/path/to/the/file"),
                 ("environment", card.environment or card.python or "omni-bench's own"),
                 ("licence", card.license), ("provenance", " ".join(card.provenance.split())),
                 ("card", card.source)]
        lines += [f"  {key}: {value}" for key, value in facts if value]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def aligned(rows: list[list[str]]) -> str:
    """Columns as wide as their longest entry (the last column runs on)."""
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip() for r in rows)


def _declared(spec) -> str:
    """'39 structures, 31 reactions' from the task file's ``counts``; '?' when it declares none."""
    from ..taskspec import describe_counts

    return describe_counts(spec.counts.items, spec.counts.item_name, spec.counts.scored, spec.counts.scored_name) \
        if spec.counts else "?"


def _counted(tasks: dict, data_dir: str | None) -> dict[str, str]:
    """Items and scored values per task, through the loaders; '?' where the reference data is not there."""
    from .. import data
    from ..run.prepare import load_items
    from ..scored import scored_count
    from ..taskspec import describe_counts

    root, origin = data.resolve_data_root(data_dir)
    counts = {}
    for name, spec in tasks.items():
        try:
            items = load_items(spec, root, origin)
        except OmniBenchError as exc:
            counts[name] = f"?: {exc}" if "counts." in str(exc) else "?: data missing"
            continue
        names = spec.counts
        counts[name] = describe_counts(len(items), names.item_name if names else "items",
                                       scored_count(spec, items), names.scored_name if names else "scored")
    return counts
