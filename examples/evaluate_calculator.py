"""Evaluate an ASE calculator you hold in Python, the way a notebook user does.

    python examples/evaluate_calculator.py

EMT stands in for your model (any ASE Calculator instance works). Its results are stored under the name you
give, in the same store and results folder as 'omni-bench run', so a second call computes nothing; after you
change the model's weights, give it another name or pass rerun=True.
"""

from ase.calculators.emt import EMT

import omni_bench

evaluation = omni_bench.evaluate(EMT(), name="my-emt", level_of_theory="EMT (effective medium theory)",
                                 tasks=["s22"], limit=3, out="omni-bench-results")
print(evaluation.metrics)
print(evaluation.predictions["s22"][["id", "predicted", "reference", "unit", "status"]])
