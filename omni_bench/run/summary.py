"""From a plan's stored items to its outcome: scored entries, metrics, and the results JSON and CSV."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import results, scoring
from ..models.loaded import CHARGE_SPIN_IGNORED
from ..taskspec import primary_metric
from .options import RunOptions
from .plan import RunPlan


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
    #: values the headline metric scored (e.g. reactions, where items are molecules), and what both are called
    n_scored: int = 0
    item_name: str = "items"
    scored_name: str = "scored"
    #: items whose charge or spin the model could not take
    charge_spin_dropped: int = 0
    #: energy convention of the reference the model was scored against (None: the task has one reference)
    reference_convention: str | None = None


def summarise(plan: RunPlan, options: RunOptions, wall_s: float, device: str,
              single_points: dict[str, Any] | None = None) -> TaskOutcome:
    """Score the plan's stored items (the task's items only: a parent's stored items may be more) and write
    the results files when the run has an ``out_dir``."""
    task, variant, spec = plan.task, plan.variant, plan.task.spec
    ids = {i.id for i in task.items}
    stored = {k: v for k, v in plan.store.get(plan.key).items() if k in ids} if plan.key else {}
    convention = variant.card.energy_convention
    entries = scoring.score(spec, task.protocol, task.items, stored, task.params, convention)
    metrics = scoring.metrics(spec, entries)
    failures = [{"item_id": s.item_id, "error": s.error} for s in stored.values() if s.status == "failed"]
    notes = Counter(n for s in stored.values() for n in s.notes)
    headline = primary_metric(spec.metrics).quantity
    computed = len(plan.written)
    outcome = TaskOutcome(variant.label, spec.name, len(task.items), len(failures), metrics, computed,
                          failures=failures, n_scored=sum(e.quantity == headline for e in entries),
                          item_name=spec.counts.item_name if spec.counts else "items",
                          scored_name=spec.counts.scored_name if spec.counts else "scored",
                          charge_spin_dropped=notes[CHARGE_SPIN_IGNORED],
                          reference_convention=scoring.reference_convention(spec, convention))
    if options.out_dir is not None:
        record = results.record(
            label=variant.label, fingerprint_id=plan.fingerprint_id, fingerprint=plan.fingerprint,
            card_source=variant.card.source, task=spec,
            data_root=str(options.data_root) if spec.files else None,
            config={"device": options.device, "limit": options.limit, "rerun": options.rerun,
                    "store": str(options.store.path), "inputs_hash": task.identity.inputs_hash,
                    "stored_as": task.identity.name,
                    "protocol_params": task.params,
                    "loader_params": spec.loader_params, "single_points": single_points,
                    "reference_energy_convention": outcome.reference_convention,
                    "trust_code": plan.trusted_code},
            device=device, wall_s=wall_s, computed=computed, cached=len(task.items) - computed,
            n_items=len(task.items), failures=failures, notes=dict(notes), metrics=metrics,
            card=results.card_summary(variant.card, variant.channel))
        record["complete"] = not task.partial
        outcome.results_file = results.write(options.out_dir, variant.label, spec, record, entries)
    return outcome
