"""Write a model card (YAML, matbench-discovery style) from a training run's ``metrics.json``.

``python -m omni_bench_reference.card RUN_DIR --name omni --checkpoint pkg:omni_bench_reference/omni.pth --out FILE``.
Every figure in the card comes from the run's metrics file and the training set's header.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from omni_bench.schema import load_yaml

from .training_set import HEADER, TEST_POOLS

REPO = Path(__file__).resolve().parent.parent
CHANNEL_LEVELS = {
    "PBE": ("PBE/PBE+U (Materials Project), kept from 7net-mf-0 by replay", "pbe"),
    "R2SCAN": ("r2SCAN (Materials Project), kept from 7net-mf-0 by replay", "r2scan"),
    "PBE0": ("PBE0/def2-SVP (PySCF, RI-JK), no dispersion", "pbe0"),
    "GFN2": ("GFN2-xTB (tblite); includes its own D4 dispersion", None),
}


def _git_hash() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def benchmark_structures(data_root: Path | None) -> dict[str, list]:
    """Every bundled task's structures, by task name (read through omni-bench's data layer)."""
    from omni_bench import data
    from omni_bench.run.prepare import prepare_tasks
    from omni_bench.task_registry import all_tasks

    root, origin = data.resolve_data_root(str(data_root) if data_root else None)
    prepared = prepare_tasks(list(all_tasks().values()), root, origin)
    return {p.spec.name: [a for item in p.items for a in item.structures.values()] for p in prepared}


def in_domain_tasks(data_root: Path | None) -> list[str]:
    """The tasks that share a molecule or crystal with the training set (``overlap``): the card's in_domain."""
    from ase.io import read

    from .overlap import tasks_sharing_structures
    from .training_set import TRAINING_SET

    return tasks_sharing_structures(read(TRAINING_SET, index=":", format="extxyz"), benchmark_structures(data_root))


def in_domain_from(card_path: Path, training_set_sha256: str) -> list[str]:
    """Another card's in_domain, when it was trained on the same training set (the overlap check loads every
    task's structures, about a minute: the ablation's twelve runs share one answer)."""
    other = load_yaml(card_path, "model card")
    if other["training"]["training_set_sha256"] != training_set_sha256:
        raise ValueError(f"{card_path}: trained on another training set (training.training_set_sha256); "
                         "drop --in-domain-from to compute in_domain afresh")
    return list(other["in_domain"])


def task_figures(results_dir: Path, name: str, checkpoint_sha256: str) -> dict[str, dict]:
    """The headline figure of every task a variant of this checkpoint was run on, by variant label then task,
    from the results files ``omni-bench run --out`` wrote; results of another checkpoint are left out."""
    from omni_bench.reporting.load import load_results
    from omni_bench.taskspec import primary_metric

    figures: dict[str, dict] = {}
    for result in load_results([results_dir]):
        fingerprint = result.record["model"].get("fingerprint") or {}
        if result.model != name or fingerprint.get("checkpoint_sha256") != checkpoint_sha256:
            continue
        spec = primary_metric(result.metric_specs)
        stored = result.metrics[spec.name]
        figures.setdefault(result.label, {})[result.task] = {
            "metric": spec.name, "value": None if stored.get("value") is None else round(float(stored["value"]), 4),
            "unit": stored.get("unit"), "n": stored.get("n"), "failed": result.n_failed,
            "reference": result.record["task"].get("level_of_theory")}
    return dict(sorted(figures.items()))


def _train_command(recipe: dict) -> str:
    """The command that trained the run: the config, its seed and epoch cap, and a penalty strength other than
    the config file's (``train --regularisation``)."""
    from .recipe import RecipeConfig

    config_file = REPO / "reference_model" / "configs" / f"{recipe['name']}.yaml"
    command = f"python -m omni_bench_reference.train --config {config_file.relative_to(REPO)}"
    for option in ("seed", "epochs"):
        if recipe.get(option) is not None:
            command += f" --{option} {recipe[option]}"
    if not config_file.is_file() or RecipeConfig.from_yaml(config_file).regularisation != recipe["regularisation"]:
        command += f" --regularisation {recipe['regularisation']:g}"
    return command


def _description(metrics: dict) -> str:
    """What the run is, with the recipe parts it really used."""
    parts = [f"selective L2 on task rows (lambda {metrics['regularisation_lambda']:g})"
             if metrics["regularisation_lambda"] else None,
             "domain-bridging set" if metrics["dbs"]["mixed_in"] else None, "replay"]
    text = ("omni-bench's reference model: 7net-mf-0 with PBE0 and GFN2 channels appended and trained by the "
            f"SevenNet-Omni recipe ({', '.join(p for p in parts if p)}) on the project's own small labelled set.")
    if not metrics["regularisation_lambda"]:
        text += (" The selective penalty is off: at this scale it cost PBE0 force accuracy without a measurable "
                 "transfer gain (reference_model/ABLATION.md).")
    return text + " A recipe demonstrator, not a production potential."


def build_card(run_dir: Path, name: str, checkpoint: str, data_root: Path | None = None,
               in_domain: list[str] | None = None, results_dir: Path | None = None) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    header = yaml.safe_load(HEADER.read_text())
    frames = metrics["frames"]["train"]
    channels = {}
    for channel in metrics["channels"]:
        level, d3 = CHANNEL_LEVELS[channel]
        entry = {"level_of_theory": level,
                 "training_data": f"{frames.get(channel, 0)} frames of reference_model/data/training_set.extxyz"}
        if d3:
            entry["d3_functional"] = d3
        channels[channel] = entry
    recipe = metrics["recipe"]
    return {
        "name": name,
        "description": _description(metrics),
        "factory": "omni_bench.models.factories:sevennet",
        "args": {"model": "{checkpoint}"},
        "checkpoint": checkpoint,
        "channel_arg": "modal",
        "channels": channels,
        "default_channel": "PBE",
        "trained_with_dispersion": False,
        "in_domain": in_domain if in_domain is not None else in_domain_tasks(data_root),
        "training_data": ["MPtrj and MP r2SCAN (through 7net-mf-0)",
                          f"reference_model/data/training_set.extxyz ({header['frames']} frames, of which "
                          f"{sum(header['structures_by_pool'][p] for p in TEST_POOLS)} are the held-out domain-B "
                          "test, never trained on)"],
        "provenance": (f"Trained by `{_train_command(recipe)}`; card generated at git {_git_hash()}"),
        "packages": ["sevenn", "torch", "e3nn"],
        "architecture": "SevenNet (NequIP-style, 5 interaction layers, lmax 2, 5 A cutoff) with modality one-hot",
        "parameters": metrics["parameters"]["trainable"],
        "training": {
            "start": recipe.get("base_model", "7net-mf-0"),
            "recipe_config": f"reference_model/configs/{recipe['name']}.yaml",
            "training_set_sha256": metrics["training_set"]["sha256"],
            "frames_per_channel": frames,
            "validation_frames_per_channel": metrics["frames"]["validation"],
            "dbs": metrics["dbs"],
            "regularisation_lambda": metrics["regularisation_lambda"],
            "theta_T_parameters": metrics["parameters"]["theta_T_regularised"],
            "loss_weights": metrics["loss_weights"],
            "epochs": metrics["epochs"],
            "stopped": metrics.get("stopped"),
            "best_epoch": metrics.get("best_epoch"),
            "hardware": metrics["hardware"],
            "wall_time_s": metrics["wall_s_training"],
            "versions": metrics["versions"],
            "checkpoint_sha256": metrics["checkpoint"]["sha256"],
            "final_validation": metrics["final_validation"],
            "domain_b_test": metrics.get("domain_b"),
            "git_at_card": _git_hash(),
        },
        **({"task_figures": task_figures(results_dir, name, metrics["checkpoint"]["sha256"])} if results_dir else {}),
    }


def refresh_task_figures(card_path: Path, results_dir: Path, command: str) -> None:
    """Rewrite only the card's ``task_figures`` from ``results_dir`` (new committed results of the same
    checkpoint; the training run's folder is not needed), and say so in the card's first line."""
    lines = card_path.read_text().split("\n", 1)
    card = yaml.safe_load(lines[1])
    card["task_figures"] = task_figures(results_dir, card["name"], card["training"]["checkpoint_sha256"])
    header = lines[0].split("; do not edit by hand.")[0]
    header = header.split("; task_figures refreshed by")[0]
    card_path.write_text(f"{header}; task_figures refreshed by python -m omni_bench_reference.card {command}; "
                         "do not edit by hand.\n" + yaml.safe_dump(card, sort_keys=False, width=110))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m omni_bench_reference.card", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path, nargs="?", help="training output folder (holds metrics.json)")
    parser.add_argument("--refresh-task-figures", action="store_true",
                        help="only rewrite the task_figures of --out (the shipped card) from --results")
    parser.add_argument("--name", default="omni")
    parser.add_argument("--checkpoint", default="pkg:omni_bench_reference/omni.pth",
                        help="where the card finds the checkpoint (a path or pkg:PACKAGE/file)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "model_card.yaml")
    parser.add_argument("--data-dir", type=Path, help="reference data root, for in_domain (default: omni-bench's)")
    parser.add_argument("--in-domain-from", type=Path, metavar="CARD",
                        help="copy in_domain from this card (it must be trained on the same training set)")
    parser.add_argument("--results", type=Path, metavar="DIR",
                        help="add task_figures: the headline figure of every task this checkpoint has results for "
                             "in DIR (an omni-bench run --out folder, e.g. reports/leaderboard-results)")
    args = parser.parse_args(argv)
    command = " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    if args.refresh_task_figures:
        if args.results is None:
            parser.error("--refresh-task-figures needs --results")
        refresh_task_figures(args.out, args.results, command)
        print(f"refreshed the task figures of {args.out}")
        return
    if args.run_dir is None:
        parser.error("the training output folder (run_dir) is required")
    in_domain = None
    if args.in_domain_from:
        sha = json.loads((args.run_dir / "metrics.json").read_text())["training_set"]["sha256"]
        try:
            in_domain = in_domain_from(args.in_domain_from, sha)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
    card = build_card(args.run_dir, args.name, args.checkpoint, args.data_dir, in_domain, args.results)
    args.out.write_text(f"# Generated by python -m omni_bench_reference.card {command}; do not edit by hand.\n"
                        + yaml.safe_dump(card, sort_keys=False, width=110))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
