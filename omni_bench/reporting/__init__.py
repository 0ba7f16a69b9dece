"""Reports, leaderboards and the regression gate, all read from results folders written by ``omni-bench run``.

A results folder (``--out`` of ``run``, default ``omni-bench-results``) holds one JSON per (model label,
task) with the settings, fingerprint and metrics, and the per-item predictions as CSV beside it. Everything
here works from those two files alone, so a report can be made on another machine than the one that ran
the models, and every number in it can be traced back to a row of a predictions CSV.
"""
