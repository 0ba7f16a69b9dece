"""Benchmark protocols, one module each.

A protocol module defines:

- ``PARAMS``: the parameters a task file may set, with their defaults;
- ``QUANTITIES``: each quantity it computes and the unit it computes it in;
- ``compute(item, model, params) -> dict[str, float]``: the model's values for one item, in
  ``QUANTITIES`` units; it raises on failure (the runner records the failure and goes on);
- optionally ``derive(items, results, params) -> list[Prediction]``: when the scored quantities combine
  several items (reaction energies from molecule energies, energies relative to one polymorph).
  Without it each item's reference quantities are scored against its own computed values.
"""
