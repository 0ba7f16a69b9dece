"""omni-bench against CatBench on the same relaxations: the 39 structures of mamun-noble-relaxed, one model.

Both sides relax every structure (slabs with the data's FixAtoms, adsorbate-slabs, gases) with FIRE to the
task's fmax (0.05 eV/A) in at most its 500 steps, with the same model weights. CatBench's side is its own
relaxation routine (``catbench.utils.calculation_utils.energy_cal``, what its adsorption workflow calls for
each structure) on the model's ASE calculator, one structure after another; omni-bench's side is the runner's
computation of the task's items (``run.compute.compute_items``: the structures relaxed together in lock-step,
models/lockstep.py; with ``--no-batch`` one at a time). Model loading is outside both timings; the two sides
alternate ``--rounds`` times in this one process, so a machine that slows down slows both.

Prints each round's wall times, the median ratio (omni-bench / CatBench), the largest energy difference
(eV) and how many relaxations took a different number of steps. Needs the optional dependency:
``pip install 'omni-bench[peers]'`` (CatBench 1.1.6). Run alone on an idle machine::

    python benchmarks/peer_catbench.py --model 7net-0 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TASK = "mamun-noble-relaxed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="7net-0")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: as omni-bench run)")
    parser.add_argument("--no-batch", action="store_true", help="omni-bench relaxes one structure at a time")
    args = parser.parse_args(argv)
    try:
        from catbench.utils.calculation_utils import energy_cal, get_fixed_indices
    except ImportError:
        print("CatBench is not installed: pip install 'omni-bench[peers]'", file=sys.stderr)
        return 2

    from omni_bench import data
    from omni_bench.commands.run import choose_threads, limit_threads
    from omni_bench.models.batched import default_batch_atoms
    from omni_bench.models.loaded import LoadedModel
    from omni_bench.models.registry import resolve_models
    from omni_bench.run.compute import compute_items
    from omni_bench.run.prepare import prepare_tasks
    from omni_bench.task_registry import all_tasks

    threads, why = choose_threads(args.threads)
    limit_threads(threads)
    spec = all_tasks()[TASK]
    root = Path(os.environ.get("OMNI_BENCH_DATA") or REPO.parent / "shared" / "data")
    (task,) = prepare_tasks([spec], data.resolve_data_root(root)[0])
    params = task.params
    (variant,) = resolve_models([args.model])
    model = LoadedModel(variant, "cpu")
    batch_atoms = 0 if args.no_batch else default_batch_atoms(model.device)
    structures = [item.structures[item.meta["kind"]] for item in task.items]
    print(f"{TASK}: {len(structures)} structures, {args.model}, FIRE fmax {params['fmax']} eV/A, "
          f"at most {params['max_steps']} steps; threads {threads} ({why}); omni-bench "
          f"{'one at a time' if args.no_batch else f'lock-step, batches of {batch_atoms} atoms'}")

    def catbench_side() -> tuple[list[float], list[int]]:
        energies, steps = [], []
        for atoms in structures:
            energy, nsteps, *_ = energy_cal(model.base_calc, atoms, params["fmax"], params["max_steps"], 1.0,
                                            get_fixed_indices(atoms), params["optimizer"])
            energies.append(float(energy))
            steps.append(int(nsteps))
        return energies, steps

    def omni_side() -> tuple[list[float], list[int]]:
        results = list(compute_items(model, task.protocol, task.items, params, batch_atoms))
        failed = [r.item_id for r in results if r.status != "ok"]
        if failed:
            raise SystemExit(f"omni-bench failed on {failed}")
        return [r.values["energy"] for r in results], [int(r.values["relax_steps"]) for r in results]

    catbench_side()  # warm both paths once (first calls build caches), untimed
    ratios = []
    for round_number in range(1, args.rounds + 1):
        start = time.perf_counter()
        peer_energies, peer_steps = catbench_side()
        peer_s = time.perf_counter() - start
        start = time.perf_counter()
        our_energies, our_steps = omni_side()
        our_s = time.perf_counter() - start
        ratios.append(our_s / peer_s)
        largest = max(abs(a - b) for a, b in zip(our_energies, peer_energies, strict=True))
        differ = sum(a != b for a, b in zip(our_steps, peer_steps, strict=True))
        print(f"round {round_number}: CatBench {peer_s:.1f} s, omni-bench {our_s:.1f} s, ratio {ratios[-1]:.2f}; "
              f"largest energy difference {largest:.2e} eV; steps differ in {differ} of {len(structures)} "
              f"(CatBench {sum(peer_steps)} steps in all, omni-bench {sum(our_steps)})")
    print(f"median ratio omni-bench / CatBench: {statistics.median(ratios):.2f} over {args.rounds} rounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
