"""Lock-step against one-at-a-time relaxation on every task whose protocol relaxes through the runner.

For each task whose protocol names its relaxations (``relaxations(item, params)``: adsorption energies,
elastic constants, phonons...), the first ``--items`` items are computed as ``omni-bench run`` computes them
(``run.compute.compute_items``), once with the runner relaxing them together in lock-step and once one at a
time (``--no-batch``), alternating ``--rounds`` times in one process. Prints the wall times, their median
ratio, the largest difference of any value the items return, and how many relaxations took another number
of steps. Run alone on an idle machine::

    python benchmarks/lockstep_tasks.py --model 7net-0 --items 12 --rounds 2
    python benchmarks/lockstep_tasks.py --task mamun-noble-relaxed --items 39
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def relaxing_tasks(all_specs: dict) -> list[str]:
    """Tasks whose protocol relaxes through the runner, with the task's own parameters."""
    return [name for name, spec in sorted(all_specs.items())
            if hasattr(spec.protocol_module, "relaxations") and spec.run_params.get("relax", True)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="7net-0")
    parser.add_argument("--task", action="append", help="a task (repeatable); default: every relaxing task")
    parser.add_argument("--items", type=int, default=12, help="items per task (the first ones)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

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
    specs = all_tasks()
    names = args.task or relaxing_tasks(specs)
    root = data.resolve_data_root(Path(os.environ.get("OMNI_BENCH_DATA") or REPO.parent / "shared" / "data"))[0]
    (variant,) = resolve_models([args.model])
    model = LoadedModel(variant, "cpu")
    budget = default_batch_atoms(model.device)
    print(f"{args.model}, threads {threads} ({why}); lock-step batches of at most {budget} atoms")
    for name in names:
        (task,) = prepare_tasks([specs[name]], root, limit=args.items)

        def computed(batch_atoms: int, task=task) -> tuple[float, dict]:
            start = time.perf_counter()
            results = {r.item_id: r for r in compute_items(model, task.protocol, task.items, task.params, batch_atoms)}
            return time.perf_counter() - start, results

        ratios, largest, steps_differ = [], 0.0, 0
        for _ in range(args.rounds):
            alone_s, alone = computed(0)
            together_s, together = computed(budget)
            ratios.append(together_s / alone_s)
            for item_id, result in alone.items():
                other = together[item_id]
                if result.status != other.status:
                    print(f"  {item_id}: {result.status} one at a time, {other.status} in lock-step")
                    continue
                for key, value in (result.values or {}).items():
                    if key == "relax_steps":
                        steps_differ += value != other.values[key]
                    else:
                        largest = max(largest, abs(value - other.values[key]))
            print(f"{name}: {len(task.items)} items; one at a time {alone_s:.1f} s, lock-step {together_s:.1f} s, "
                  f"ratio {ratios[-1]:.2f}")
        print(f"{name}: median ratio lock-step / one at a time {statistics.median(ratios):.2f}; largest value "
              f"difference {largest:.2e} (task units of each value); relaxations with other step counts: "
              f"{steps_differ} (counted where the protocol returns relax_steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
