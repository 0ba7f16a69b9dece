"""Batched single points against the per-structure ASE loop: the same model object, the same structures, one
run (issue 5: on CPU the batched path must be no slower; on GPU at least 3x faster for the molecule suites).

Three ways to get the same energies, timed round by round so that a shared machine slows them alike:

- ``ase``: ``LoadedModel.energy`` per structure through the ASE calculator (what runs without batching);
- ``batched``: ``LoadedModel.prefetch`` with the device's default atom budget, then ``energy`` per structure;
- ``one_by_one``: the batched evaluator with a budget of one atom, so one structure per forward pass: the
  gain from computing energies only (no forces, no stress), without the gain from batching.

The benchmark times ``batched``; the other two run in the untimed ``setup`` of each round. Medians of the
per-round ratios go to ``extra_info`` and are printed. Run (single thread, as the numbers in the report)::

    OMP_NUM_THREADS=1 python -m pytest benchmarks/test_batched_speed.py --benchmark-only -s
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
from conftest import model_under_test, timed
from single_points import ase_loop, batched_loop, single_points

from omni_bench.models.batched import default_batch_atoms

REPO = Path(__file__).resolve().parent.parent
GROUP = "batched single points"
#: (task, items): S22 is 66 molecules of 2-30 atoms; two OpenFF torsion scans are 48 drug-like molecules
STRUCTURE_SETS = {"s22": ("s22", None), "openff-torsions-2": ("openff-torsions", 2)}
ROUNDS, WARMUP_ROUNDS = 3, 1


@pytest.mark.parametrize("structure_set", list(STRUCTURE_SETS))
@pytest.mark.parametrize("name", ["7net-0", "chgnet"])
def test_batched_against_per_structure(benchmark, clock, name, structure_set):
    model = model_under_test(name).loaded
    structures = single_points(*STRUCTURE_SETS[structure_set])
    assert model.batched_path is not None
    ase_seconds: list[float] = []
    one_by_one_seconds: list[float] = []

    def setup():
        ase_seconds.append(timed(clock, ase_loop, model, structures))
        one_by_one_seconds.append(timed(clock, batched_loop, model, structures, 1))
        return (model, structures), {}

    before = model.evaluations["batched"]
    benchmark.group = GROUP
    benchmark.pedantic(batched_loop, setup=setup, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS)
    served = model.evaluations["batched"] - before
    assert served == 2 * (ROUNDS + WARMUP_ROUNDS) * len(structures), "some energies were not batched"

    batched_seconds = list(benchmark.stats.stats.data)
    ase_seconds, one_by_one_seconds = ase_seconds[WARMUP_ROUNDS:], one_by_one_seconds[WARMUP_ROUNDS:]
    ratio = statistics.median(b / a for b, a in zip(batched_seconds, ase_seconds, strict=True))
    one_by_one_ratio = statistics.median(o / a for o, a in zip(one_by_one_seconds, ase_seconds, strict=True))
    benchmark.extra_info.update({
        "kind": "batched_vs_ase", "model": model.variant.label, "structures": structure_set,
        "n_structures": len(structures), "n_atoms": sum(len(a) for a in structures), "device": model.device,
        "batch_atoms": default_batch_atoms(model.device), "torch_threads": _torch_threads(), "ase_seconds": ase_seconds,
        "batched_seconds": batched_seconds, "one_by_one_seconds": one_by_one_seconds,
        "median_ratio_batched_to_ase": ratio, "median_ratio_one_by_one_to_ase": one_by_one_ratio,
    })
    print(f"\n{model.variant.label} {structure_set} ({len(structures)} structures, {model.device}): batched/ASE "
          f"{ratio:.3f} ({1 / ratio:.2f}x faster), one structure per pass/ASE {one_by_one_ratio:.3f}")
    assert ratio <= 1.0, f"batched single points take {ratio:.2f}x the per-structure ASE loop"


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()
