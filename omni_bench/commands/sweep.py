"""``omni-bench sweep FILE``: every model x channel x task of a sweep file, scheduled at once (on Dask by
default), finished items skipped, and the leaderboard rebuilt at the end.

A sweep file (see examples/sweep.yaml)::

    models:                       # as --model; a mapping adds channels and factory arguments
      - 7net-0
      - {model: 7net-mf-0, channels: [PBE, R2SCAN]}
      - {model: chgnet, args: {model_name: "0.3.0"}}
    suites: [quick]               # and/or tasks: [s22, ...]
    limit: 10                     # optional, as --limit
    batch_atoms: 2048             # optional, as --batch-atoms (0: off)
    executor: {name: dask, workers: 4}   # optional; also scheduler, cluster_config, chunk_size
    store: results.sqlite         # optional; paths are relative to the sweep file
    out: results
    leaderboard: leaderboard      # output stem: leaderboard.md, .csv, .html

Options given on the command line win over the file.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import executors
from ..arguments import path_argument
from ..devices import check_device
from ..errors import OmniBenchError
from ..schema import name_problem
from .run import (
    add_batch_arguments,
    add_fetch_argument,
    add_safety_arguments,
    batch_atoms_from_args,
    ensure_data,
    ensure_weights,
)

HELP = "run a sweep file (models x channels x suites) on Dask and rebuild the leaderboard"

_FIELDS = {"models": True, "channels": False, "suites": False, "tasks": False, "limit": False, "device": False,
           "item_timeout": False, "batch_atoms": False, "store": False, "out": False, "data_dir": False,
           "leaderboard": False, "executor": False}
_MODEL_FIELDS = {"model": True, "channels": False, "args": False}
_EXECUTOR_FIELDS = {"name": False, "scheduler": False, "workers": False, "cluster_config": False, "chunk_size": False}
DEFAULT_OUT = Path("omni-bench-results")


@dataclass
class ModelEntry:
    model: str
    channels: list[str] = field(default_factory=list)
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sweep:
    path: Path
    models: list[ModelEntry]
    suites: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    limit: int | None = None
    device: str | None = None
    item_timeout: float | None = None
    batch_atoms: int | None = None
    store: Path | None = None
    out: Path | None = None
    data_dir: Path | None = None
    leaderboard: Path | None = None
    executor: dict[str, Any] = field(default_factory=dict)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep", type=path_argument, help="sweep file (YAML): models, channels, suites, tasks")
    parser.add_argument("--store", type=path_argument,
                        help="SQLite result store (default: the file's, else the user cache)")
    parser.add_argument("--out", type=path_argument, help=f"results folder (default: the file's, else {DEFAULT_OUT})")
    parser.add_argument("--data-dir", type=path_argument,
                        help="reference data root (default: the file's, $OMNI_BENCH_DATA, cache)")
    add_fetch_argument(parser)
    parser.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: the file's, else auto)")
    parser.add_argument("--limit", type=int, help="run only the first N scored units of each task (see run --help)")
    parser.add_argument("--rerun", action="store_true", help="recompute items that are already stored")
    parser.add_argument("--item-timeout", type=float, metavar="SECONDS",
                        help="record an item as failed when it takes longer than this")
    parser.add_argument("--leaderboard", type=path_argument, metavar="STEM",
                        help="leaderboard output stem (default: the file's, else OUT/leaderboard)")
    parser.add_argument("--no-leaderboard", action="store_true", help="do not rebuild the leaderboard")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_safety_arguments(parser)
    add_batch_arguments(parser, default_text="the file's, else ")
    executors.add_arguments(parser, default=None, default_text="the file's, else dask")


def load_sweep(path: Path) -> Sweep:
    """Read a sweep file strictly: unknown keys and wrong types name the file and the field."""
    from ..schema import Fields, load_yaml

    fields = Fields(path, "", load_yaml(path, "sweep file"), _FIELDS)
    raw_models = fields.get("models", list)
    if not raw_models:
        fields.fail("models", "must list at least one model")
    models = [_model_entry(path, n, entry) for n, entry in enumerate(raw_models)]
    suites, tasks = _names(fields, "suites"), _names(fields, "tasks")
    if not suites and not tasks:
        fields.fail("suites", "or 'tasks' must name what to run")
    device = fields.text("device")
    if device is not None and (problem := check_device(device)):
        fields.fail("device", problem)
    limit = fields.get("limit", int)
    if limit is not None and limit < 1:
        fields.fail("limit", "must be at least 1")
    item_timeout = fields.get("item_timeout", (int, float))
    if item_timeout is not None and not item_timeout > 0:
        fields.fail("item_timeout", "must be a positive number of seconds (leave it out for no limit)")
    batch_atoms = fields.get("batch_atoms", int)
    if batch_atoms is not None and batch_atoms < 0:
        fields.fail("batch_atoms", "must be 0 (off) or a positive number of atoms")
    executor = Fields(path, "executor", fields.get("executor", dict, {}), _EXECUTOR_FIELDS)
    for key, kind in (("name", str), ("scheduler", str), ("workers", int), ("cluster_config", str),
                      ("chunk_size", int)):
        executor.get(key, kind)
    if executor.data.get("name") not in (None, *executors.EXECUTORS):
        executor.fail("name", f"must be one of {', '.join(executors.EXECUTORS)}")
    settings = dict(executor.data)
    if "cluster_config" in settings:
        settings["cluster_config"] = _relative(path, settings["cluster_config"])
    return Sweep(path, models, suites, tasks, limit, device, item_timeout, batch_atoms,
                 _relative(path, fields.text("store")),
                 _relative(path, fields.text("out")), _relative(path, fields.text("data_dir")),
                 _relative(path, fields.text("leaderboard")), settings)


def _model_entry(path: Path, n: int, entry: Any) -> ModelEntry:
    from ..schema import Fields

    fields = Fields(path, f"models[{n}]", {"model": entry} if isinstance(entry, str) else entry, _MODEL_FIELDS)
    model = fields.text("model")
    if not model.isprintable():
        fields.fail("model", f"{model!r} holds control or unprintable characters")
    args = dict(fields.get("args", dict, {}))
    if not all(isinstance(k, str) and k.isprintable() for k in args):
        fields.fail("args", "keys must be argument names (printable text)")
    return ModelEntry(model, _names(fields, "channels"), args)


def _names(fields, key: str) -> list[str]:
    names = fields.get(key, list, [])
    if not all(isinstance(n, str) for n in names):
        fields.fail(key, "must be a list of names")
    for name in names:
        problem = name_problem(name)
        if problem:
            fields.fail(key, f"name {problem}")
    return names


def _relative(path: Path, value: str | None) -> Path | None:
    return None if value is None else (path.parent / Path(value).expanduser())


def run(args) -> int:
    from .. import data, task_registry
    from ..models.registry import check_factory_args, resolve_models
    from ..run.options import RunOptions
    from ..store import ResultStore
    from .run import execute

    sweep = load_sweep(args.sweep)
    settings = _executor_settings(args, sweep.executor)
    limit = args.limit if args.limit is not None else sweep.limit
    if limit is not None and limit < 1:
        raise OmniBenchError("--limit must be at least 1")
    tasks = task_registry.select(sweep.tasks, sweep.suites, args.tasks_dir)
    variants = []
    for n, entry in enumerate(sweep.models):
        for variant in resolve_models([entry.model], entry.channels, trust_code=args.trust_code,
                                      source=f"sweep file {args.sweep}"):
            given = {k: (f"sweep file {args.sweep}: field 'models[{n}].args.{k}'", v) for k, v in entry.args.items()}
            trusted = check_factory_args(variant.card, given, args.trust_code)
            variant.trusted_code = "; ".join(filter(None, [variant.trusted_code, trusted])) or None
            variant.args = {**variant.args, **entry.args}
            variants.append(variant)
    data_dir = args.data_dir or (str(sweep.data_dir) if sweep.data_dir else None)
    root, origin = data.resolve_data_root(data_dir)
    ensure_data(tasks, root, origin, args)
    ensure_weights(variants, args)
    out = args.out or sweep.out or DEFAULT_OUT
    store = ResultStore(args.store or sweep.store)
    options = RunOptions(store=store, out_dir=out, data_root=root, data_origin=origin,
                         device=args.device or sweep.device or "auto", limit=limit, rerun=args.rerun,
                         progress=not args.no_progress,
                         item_timeout=args.item_timeout if args.item_timeout is not None else sweep.item_timeout,
                         batch_atoms=batch_atoms_from_args(args, sweep.batch_atoms),
                         replace_complete=args.replace_complete)
    print(f"sweep {args.sweep}: {len(variants)} model variants x {len(tasks)} tasks on {settings.name}",
          file=sys.stderr)
    code = execute(variants, tasks, options, settings, "sweep")
    if code or args.no_leaderboard:
        return code
    return rebuild_leaderboard(out, args.leaderboard or sweep.leaderboard or out / "leaderboard", args.tasks_dir)


def _executor_settings(args, from_file: dict[str, Any]) -> executors.ExecutorSettings:
    """The command line's executor options, else the file's; Dask when neither names one. A different
    ``--executor`` on the command line replaces the file's whole executor section."""
    name = args.executor or from_file.get("name") or "dask"
    if name != (from_file.get("name") or "dask"):
        from_file = {}
    if from_file.get("scheduler") and args.scheduler is None and not args.trust_code:
        raise OmniBenchError(f"sweep file {args.sweep}: field 'executor.scheduler' connects to a Dask scheduler the "
                             "file chooses, and results from its workers are unpickled here (they could run code); "
                             "give --scheduler yourself, or pass --trust-code if you trust the file")

    def pick(key: str):
        given = getattr(args, key)
        return given if given is not None else from_file.get(key)

    settings = executors.ExecutorSettings(name, pick("scheduler"), pick("workers"), pick("cluster_config"),
                                          pick("chunk_size"), args.trust_code)
    settings.check()
    return settings


def rebuild_leaderboard(results: Path, stem: Path, tasks_dirs: list[Path]) -> int:
    """Rebuild the leaderboard over everything in the results folder, through ``omni-bench leaderboard``
    (its own command, so the sweep gets exactly what users get from it)."""
    from ..cli import main

    argv = [arg for d in tasks_dirs for arg in ("--tasks-dir", str(d))]
    print(f"\nleaderboard: omni-bench leaderboard --results {results} --out {stem}", file=sys.stderr)
    return main([*argv, "leaderboard", "--results", str(results), "--out", str(stem)])
