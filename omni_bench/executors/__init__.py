"""Where the items of a run are computed: in this process (``serial``), on a Dask cluster (``dask``), or on
a batch-queue cluster started through dask-jobqueue (``slurm``). Every executor writes into the one result
store of the client, so resuming, failure records and reports do not depend on where items ran.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from ..errors import OmniBenchError

EXECUTORS = ("serial", "dask", "slurm")


@dataclass
class ExecutorSettings:
    """How to run: which executor, and for the distributed ones where the cluster is and how to cut work."""

    name: str = "serial"
    #: address of a running Dask scheduler (``tcp://host:8786``); none: start a local cluster
    scheduler: str | None = None
    #: workers of the local cluster (default: one per core, or per visible GPU) or of the batch cluster
    workers: int | None = None
    #: YAML file with the dask-jobqueue cluster settings (``--executor slurm``)
    cluster_config: Path | None = None
    #: items per Dask task (default: a few chunks per worker for each model, channel and task)
    chunk_size: int | None = None

    def check(self) -> None:
        """Reject combinations that would be silently ignored."""
        if self.name not in EXECUTORS:
            raise OmniBenchError(f"unknown executor {self.name!r}; known: {', '.join(EXECUTORS)}")
        if self.name != "dask" and self.scheduler:
            raise OmniBenchError("--scheduler needs --executor dask")
        if self.name == "slurm" and not self.cluster_config:
            raise OmniBenchError("--executor slurm needs --cluster-config FILE (see examples/slurm-cluster.yaml)")
        if self.name != "slurm" and self.cluster_config:
            raise OmniBenchError("--cluster-config needs --executor slurm")
        if self.name == "serial" and (self.workers or self.chunk_size):
            raise OmniBenchError("--workers and --chunk-size need --executor dask or slurm")
        if self.scheduler and self.workers:
            raise OmniBenchError("--workers sizes a cluster omni-bench starts; an existing --scheduler has its own")
        for flag, value in (("--workers", self.workers), ("--chunk-size", self.chunk_size)):
            if value is not None and value < 1:
                raise OmniBenchError(f"{flag} must be at least 1")


def add_arguments(parser: argparse.ArgumentParser, default: str | None = "serial",
                  default_text: str = "%(default)s") -> None:
    """The executor options shared by ``run`` and ``sweep``."""
    group = parser.add_argument_group("executor")
    group.add_argument("--executor", choices=EXECUTORS, default=default,
                       help="serial: this process; dask: a Dask cluster (local, or --scheduler); slurm: a "
                            f"dask-jobqueue cluster from --cluster-config (default: {default_text})")
    group.add_argument("--scheduler", metavar="ADDRESS", help="address of a running Dask scheduler")
    group.add_argument("--workers", type=int, metavar="N",
                       help="workers to start (default: one per core, or one per visible GPU with --device cuda)")
    group.add_argument("--cluster-config", type=Path, metavar="FILE", help="dask-jobqueue settings (YAML)")
    group.add_argument("--chunk-size", type=int, metavar="N", help="items per Dask task (default: automatic)")


def settings_from_args(args: argparse.Namespace) -> ExecutorSettings:
    settings = ExecutorSettings(args.executor, args.scheduler, args.workers, args.cluster_config, args.chunk_size)
    settings.check()
    return settings


def run(variants, tasks, options, settings: ExecutorSettings):
    """Run ``tasks`` for ``variants`` with the chosen executor; returns the runner's ``TaskOutcome`` list."""
    settings.check()
    if settings.name == "serial":
        from ..runner import run_benchmarks

        return run_benchmarks(variants, tasks, options)
    from .dask import open_client, run_on_cluster

    expected = settings.workers
    if settings.name == "slurm" and not expected:
        from .slurm import expected_workers, load_cluster_config

        expected = expected_workers(load_cluster_config(settings.cluster_config))
    with open_client(settings, options.device, progress=options.progress) as client:
        return run_on_cluster(client, variants, tasks, options, chunk_size=settings.chunk_size,
                              expected_workers=expected)
