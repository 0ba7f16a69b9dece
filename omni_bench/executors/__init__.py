"""Where the items of a run are computed: in this process (``serial``), on a Dask cluster (``dask``), or on
a batch-queue cluster started through dask-jobqueue (``slurm``). Every executor writes into the one result
store of the client, so resuming, failure records and reports do not depend on where items ran.
"""

from __future__ import annotations

from .settings import EXECUTORS, ExecutorSettings, add_arguments, settings_from_args

__all__ = ["EXECUTORS", "ExecutorSettings", "add_arguments", "run", "settings_from_args"]


def run(variants, tasks, options, settings: ExecutorSettings):
    """Run ``tasks`` for ``variants`` with the chosen executor; returns one ``TaskOutcome`` per (variant, task)."""
    settings.check()
    if settings.name == "serial":
        from .serial import run_serial

        return run_serial(variants, tasks, options)
    from .dask import open_client, run_on_cluster

    expected = settings.workers
    if settings.name == "slurm" and not expected:
        from .slurm import expected_workers, load_cluster_config

        expected = expected_workers(load_cluster_config(settings.cluster_config, settings.trust_code))
    with open_client(settings, options.device, progress=options.progress) as client:
        return run_on_cluster(client, variants, tasks, options, chunk_size=settings.chunk_size,
                              expected_workers=expected)
