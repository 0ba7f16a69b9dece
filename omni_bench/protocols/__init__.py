"""Benchmark protocols, one module each.

A protocol module defines:

- ``PARAMS``: the parameters a task file may set, with their defaults;
- ``QUANTITIES``: each quantity it computes and the unit it computes it in;
- ``compute(item, model, params) -> dict[str, float]``: the model's values for one item, in
  ``QUANTITIES`` units; it raises on failure (the runner records the failure and goes on);
- optionally ``derive(items, results, params) -> list[Prediction]``: when the scored quantities combine
  several items (reaction energies from molecule energies, energies relative to one polymorph).
  Without it each item's reference quantities are scored against its own computed values.
- with ``derive``, ``scored_units(items) -> list[list[str]]``: the item ids each scored unit (a reaction, a
  complex and its fragments, a landscape) needs, in the task's order, so that ``--limit N`` runs the first N
  whole units (``run/prepare.py``) and never a structure that scores nothing.
"""
