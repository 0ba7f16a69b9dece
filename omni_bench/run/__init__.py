"""Running tasks for model variants, in three steps that every executor shares:

- ``prepare``: each task's items, loaded and checked once, before any model runs;
- ``plan``: per (model variant, task), where its items are stored, which are pending, the claim that the
  stored ones were computed from the task's current inputs, and the rule that skips the rest after a StopTask;
- ``compute``: items of a plan, one ``ItemResult`` each; ``summary``: the results files from stored items.

Executors (``omni_bench.executors``) only schedule plans: in this process, or on a Dask cluster.
"""
