"""Runs tasks for model variants: computes what the store lacks, item by item, then scores everything.

The runner knows nothing about any particular task: the task file names a loader and a protocol, and
the runner only asks the loader for items, the protocol for values, and the store for what is done.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from . import data, plugins, results, scoring
from .items import Item
from .models.fingerprint import fingerprint, fingerprint_id
from .models.loaded import LoadedModel
from .models.registry import ModelVariant
from .store import ResultStore
from .taskspec import TaskSpec, protocol_params


@dataclass
class RunOptions:
    store: ResultStore
    out_dir: Path | None = None
    data_root: Path | None = None
    data_origin: str = ""
    device: str = "auto"
    limit: int | None = None
    rerun: bool = False
    progress: bool = True
    #: loaded models by fingerprint id, kept across ``run`` calls (tests and long-lived workers reuse them)
    model_cache: dict[str, LoadedModel] = field(default_factory=dict)


@dataclass
class TaskOutcome:
    model: str
    task: str
    n_items: int
    n_failed: int
    metrics: dict[str, dict]
    computed: int
    results_file: Path | None = None
    failures: list[dict] = field(default_factory=list)


@dataclass
class PreparedTask:
    spec: TaskSpec
    items: list[Item]
    params: dict[str, Any]


def prepare(tasks: list[TaskSpec], options: RunOptions) -> list[PreparedTask]:
    """Check data and load items for every task before any model runs, so bad input fails fast."""
    prepared = []
    for spec in tasks:
        files = data.task_files(spec, options.data_root, options.data_origin) if spec.files else {}
        items = plugins.load("loader", spec.loader).load(files, spec.loader_params)
        if options.limit is not None:
            items = items[: options.limit]
        prepared.append(PreparedTask(spec, items, protocol_params(spec)))
    return prepared


def run(variants: list[ModelVariant], tasks: list[TaskSpec], options: RunOptions) -> list[TaskOutcome]:
    prepared = prepare(tasks, options)
    outcomes = []
    for variant in variants:
        fp = fingerprint(variant)
        fid = fingerprint_id(fp)
        options.store.register_fingerprint(fid, variant.label, fp)
        model = options.model_cache.get(fid)
        for task in prepared:
            start = time.perf_counter()
            key = (fid, variant.channel or "", task.spec.name, task.spec.version)
            done = options.store.get(key)
            pending = [i for i in task.items if options.rerun or i.id not in done]
            if pending and model is None:
                model = options.model_cache[fid] = LoadedModel(variant, options.device)
            protocol = plugins.load("protocol", task.spec.protocol)
            bar = tqdm(total=len(task.items), initial=len(task.items) - len(pending), unit="item",
                       desc=f"{variant.label} {task.spec.name}", disable=not options.progress, file=sys.stderr)
            with bar:
                for item in pending:
                    _compute_one(model, protocol, task, item, options.store, key, variant.label)
                    bar.update(1)
            outcomes.append(_summarise(variant, fid, fp, task, protocol, options, key, len(pending),
                                       time.perf_counter() - start, model))
    return outcomes


def _compute_one(model: LoadedModel, protocol, task: PreparedTask, item: Item, store: ResultStore,
                 key: tuple, label: str) -> None:
    """Compute one item and commit it: values when it worked, the reason when it did not."""
    model.notes.clear()
    start = time.perf_counter()
    try:
        values = {k: float(v) for k, v in protocol.compute(item, model, task.params).items()}
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise ValueError(f"non-finite value for {', '.join(bad)}")
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a model failing on one structure must not stop the run
        store.put(key, label, item.id, "failed", error=f"{type(exc).__name__}: {exc}"[:2000],
                  notes=list(model.notes), wall_s=time.perf_counter() - start)
        return
    store.put(key, label, item.id, "ok", values=values, notes=list(model.notes),
              wall_s=time.perf_counter() - start)


def _summarise(variant, fid, fp, task: PreparedTask, protocol, options: RunOptions, key, computed: int,
               wall_s: float, model: LoadedModel | None) -> TaskOutcome:
    stored = options.store.get(key)
    ids = {i.id for i in task.items}
    stored = {k: v for k, v in stored.items() if k in ids}
    entries = scoring.score(task.spec, protocol, task.items, stored, task.params)
    metrics = scoring.metrics(task.spec, entries)
    failures = [{"item_id": s.item_id, "error": s.error} for s in stored.values() if s.status == "failed"]
    outcome = TaskOutcome(variant.label, task.spec.name, len(task.items), len(failures), metrics, computed,
                          failures=failures)
    if options.out_dir is not None:
        notes = Counter(n for s in stored.values() for n in s.notes)
        device = model.device if model else options.device
        record = results.record(
            label=variant.label, fingerprint_id=fid, fingerprint=fp, card_source=variant.card.source,
            task=task.spec, data_root=str(options.data_root) if task.spec.files else None,
            config={"device": options.device, "limit": options.limit, "rerun": options.rerun,
                    "store": str(options.store.path), "protocol_params": task.params,
                    "loader_params": task.spec.loader_params},
            device=device, wall_s=wall_s, computed=computed, cached=len(task.items) - computed,
            n_items=len(task.items), failures=failures, notes=dict(notes), metrics=metrics)
        outcome.results_file = results.write(options.out_dir, variant.label, task.spec, record, entries)
    return outcome
