"""The serial executor: the plans' items computed in this process, one (model variant, task) after another."""

from __future__ import annotations

import sys
import time
from collections import Counter

from tqdm import tqdm

from ..models.batched import default_batch_atoms
from ..models.loaded import LoadedModel
from ..run.compute import compute_items, single_point_record
from ..run.options import RunOptions
from ..run.plan import plan_run
from ..run.summary import TaskOutcome, summarise


def run_serial(variants, tasks, options: RunOptions) -> list[TaskOutcome]:
    outcomes = []
    for plan in plan_run(variants, tasks, options):
        start = time.perf_counter()
        plan.refresh_pending()  # an earlier task stored as this one may have computed some of its items
        model = options.model_cache.get(plan.fingerprint_id)
        if plan.pending and model is None:
            options.announce()
            model = options.model_cache[plan.fingerprint_id] = LoadedModel(plan.variant, options.device)
        batch_atoms = options.batch_atoms
        if batch_atoms is None and model is not None:
            batch_atoms = default_batch_atoms(model.device)
        counted = Counter(model.evaluations) if model else Counter()
        total, done = len(plan.task.items), len(plan.task.items) - len(plan.pending)
        with tqdm(total=total, initial=done, unit="item", desc=f"{plan.label} {plan.task.spec.name}",
                  disable=not options.progress, file=sys.stderr) as bar:
            if plan.pending:
                for result in compute_items(model, plan.task.protocol, plan.pending, plan.task.params,
                                            batch_atoms, options.item_timeout):
                    plan.record(result)
                    bar.update(done + len(plan.written) - bar.n)
        single_points = None if model is None else single_point_record(model, model.evaluations - counted,
                                                                          batch_atoms)
        outcomes.append(summarise(plan, options, time.perf_counter() - start,
                                  model.device if model else options.device, single_points))
    return outcomes
