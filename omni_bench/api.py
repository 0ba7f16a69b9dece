"""The Python API: ``evaluate``, ``leaderboard`` and ``report`` do what ``omni-bench run``, ``leaderboard`` and
``report`` do, through the same planner, store and results files, for a user with a model in a notebook.

``evaluate`` takes a model name, a card path or an ASE ``Calculator`` instance. An instance has no card and no
checkpoint file to hash, so it is stored under the name the user gives (with its class and its JSON-able
``parameters``): after changing its weights, give another name or ``rerun=True``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd

from .errors import OmniBenchError

DEFAULT_OUT = Path("omni-bench-results")


@dataclass
class Evaluation:
    """What one ``evaluate`` call gives: ``metrics`` (one row per model variant, task and metric, with its
    unit and counts), ``predictions`` (per task, the per-item predictions CSV as a DataFrame: model, id,
    quantity, unit, predicted, reference, status, error), the results folder and the run's outcomes."""

    metrics: pd.DataFrame
    predictions: dict[str, pd.DataFrame]
    results_dir: Path
    outcomes: list = field(repr=False, default_factory=list)

    def __repr__(self) -> str:
        return f"Evaluation of {len(self.predictions)} task(s), results in {self.results_dir}:\n{self.metrics}"


def evaluate(model: Any, *, tasks: list[str] | str = (), suites: list[str] | str = (), name: str | None = None,
             level_of_theory: str = "unknown (a calculator instance)", trained_with_dispersion: bool = False,
             channel: str | None = None, model_args: list[str] = (), limit: int | None = None,
             device: str = "auto", store: str | Path | None = None, out: str | Path | None = DEFAULT_OUT,
             data_dir: str | Path | None = None, rerun: bool = False, progress: bool = False,
             fetch: bool = False, trust_code: bool = False, batch_atoms: int | None = None) -> Evaluation:
    """Run ``model`` on ``tasks`` and ``suites`` as ``omni-bench run`` does (the same store, so a second call
    computes nothing new), and return the metrics and predictions. ``model``: a built-in name
    (``7net-mf-0@PBE``), a model-card path, ``package.module:factory``, or an ASE ``Calculator`` instance
    (then ``name`` is required: its results are stored under it, and ``level_of_theory`` says what it was
    trained on). ``channel``: one channel or ``"all"``; ``model_args``: ``KEY=VALUE`` texts as
    ``--model-arg``. ``out``: the folder for results files (None: none written, and no predictions returned).
    ``fetch``: download missing reference data first, as ``run --fetch``."""
    from . import data, executors, task_registry
    from .commands.run import ensure_data, ensure_weights
    from .models.registry import resolve_models
    from .run.options import RunOptions
    from .store import ResultStore

    tasks, suites = _names(tasks), _names(suites)
    if not tasks and not suites:
        raise OmniBenchError("evaluate: name the tasks (tasks=...) or suites (suites=...) to run")
    if limit is not None and limit < 1:
        raise OmniBenchError("evaluate: limit must be at least 1")
    if isinstance(model, (str, Path)):
        variants = resolve_models([str(model)], [channel] if channel else [], list(model_args),
                                  trust_code=trust_code)
    else:
        variants = [instance_variant(model, name, level_of_theory, trained_with_dispersion)]
    chosen = task_registry.select(tasks, suites)
    root, origin = data.resolve_data_root(Path(data_dir) if data_dir else None)
    fetching = SimpleNamespace(fetch=fetch, no_progress=not progress)
    ensure_data(chosen, root, origin, fetching)
    ensure_weights(variants, fetching)
    options = RunOptions(store=ResultStore(Path(store) if store else None), out_dir=Path(out) if out else None,
                         data_root=root, data_origin=origin, device=device, limit=limit, rerun=rerun,
                         progress=progress, batch_atoms=batch_atoms)
    try:
        outcomes = executors.run(variants, chosen, options, executors.ExecutorSettings())
    finally:
        options.store.close()
    return Evaluation(_metrics_frame(outcomes), _predictions(outcomes), options.out_dir or Path(), outcomes)


def _names(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def instance_variant(calculator: Any, name: str | None, level_of_theory: str, trained_with_dispersion: bool):
    """A model variant around a calculator instance: a card made from the name and the instance's class."""
    from ase.calculators.calculator import BaseCalculator

    from .models.card import card_from_dict
    from .models.registry import ModelVariant

    if not isinstance(calculator, BaseCalculator):
        raise OmniBenchError(f"evaluate: model must be a name, a card path or an ASE Calculator, not a "
                             f"{type(calculator).__name__}")
    if not name:
        raise OmniBenchError("evaluate: a calculator instance needs name=...: its results are stored and cached "
                             "under that name (give a new one, or rerun=True, after changing the model)")
    cls = type(calculator)
    card = card_from_dict({"name": name, "description": f"an ASE calculator instance ({cls.__qualname__})",
                           "factory": f"{cls.__module__}:{cls.__qualname__}", "level_of_theory": level_of_theory,
                           "trained_with_dispersion": trained_with_dispersion}, "<calculator instance>")
    return ModelVariant(card, None, calculator=calculator)


def _metrics_frame(outcomes) -> pd.DataFrame:
    rows = [{"model": o.model, "task": o.task, "metric": metric, "value": m.get("value"), "unit": m.get("unit"),
             "n": m.get("n"), "n_failed": m.get("n_failed"), "n_items": o.n_items}
            for o in outcomes for metric, m in o.metrics.items()]
    return pd.DataFrame(rows, columns=["model", "task", "metric", "value", "unit", "n", "n_failed", "n_items"])


def _predictions(outcomes) -> dict[str, pd.DataFrame]:
    from .reporting.load import read_result

    frames: dict[str, list[pd.DataFrame]] = {}
    for o in outcomes:
        if o.results_file is not None:
            frames.setdefault(o.task, []).append(read_result(Path(o.results_file)).predictions.assign(model=o.model))
    return {task: pd.concat(parts, ignore_index=True) for task, parts in frames.items()}


def leaderboard(results: list[str | Path] | str | Path = (DEFAULT_OUT,), *, models: list[str] = (),
                tasks: list[str] = (), suites: list[str] = (), out: str | Path | None = None,
                bootstrap: int = 1000, seed: int = 0):
    """The leaderboard of the results folders (or bundles), as ``omni-bench leaderboard`` builds it; writes
    ``out``.md/.csv/.html when given. Returns the ``reporting.leaderboard.Leaderboard``."""
    from .reporting.leaderboard import annotate, build
    from .reporting.leaderboard_output import write_all
    from .reporting.tables import metric_table

    chosen = _selected(results, models, tasks, suites, bootstrap)
    board = annotate(build(*metric_table(chosen, bootstrap, seed)), chosen)
    if out is not None:
        write_all(board, chosen, Path(out), "omni_bench.leaderboard(...)")
    return board


def report(results: list[str | Path] | str | Path = (DEFAULT_OUT,), out: str | Path = "omni-bench-report", *,
           title: str = "omni-bench report", models: list[str] = (), tasks: list[str] = (),
           suites: list[str] = (), bootstrap: int = 1000, seed: int = 0) -> tuple[Path, Path]:
    """The HTML report and Markdown summary of the results, as ``omni-bench report`` writes them; returns
    their paths."""
    from .reporting.report import build_report, write_report

    chosen = _selected(results, models, tasks, suites, bootstrap)
    return write_report(build_report(chosen, title, n_resamples=bootstrap, seed=seed, suites=_names(suites)),
                        Path(out).with_suffix(""))


def _selected(results, models, tasks, suites, bootstrap: int):
    from . import task_registry
    from .reporting.comparable import check_comparable
    from .reporting.load import load_results, select

    if bootstrap < 1:
        raise OmniBenchError("bootstrap must be at least 1")
    folders = [Path(r) for r in _names(results if not isinstance(results, Path) else [results])]
    chosen = select(load_results(folders), _names(models), _names(tasks), _names(suites))
    if not chosen:
        raise OmniBenchError(f"no results in {', '.join(map(str, folders))}")
    check_comparable(chosen, task_registry.all_tasks())
    return chosen
