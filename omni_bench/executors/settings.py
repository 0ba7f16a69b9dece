"""How a run is executed, as the user sets it: which executor, and for the distributed ones where the cluster is
and how to cut the work."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from ..arguments import path_argument
from ..errors import OmniBenchError

EXECUTORS = ("serial", "dask", "slurm")
INSTALL_HINT = "pip install 'omni-bench[dask]' (dask and distributed; dask-jobqueue for --executor slurm)"


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
    #: the user's ``--trust-code``: the cluster config may put commands into the batch script
    trust_code: bool = False

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
    group.add_argument("--cluster-config", type=path_argument, metavar="FILE", help="dask-jobqueue settings (YAML)")
    group.add_argument("--chunk-size", type=int, metavar="N", help="items per Dask task (default: automatic)")


def settings_from_args(args: argparse.Namespace) -> ExecutorSettings:
    settings = ExecutorSettings(args.executor, args.scheduler, args.workers, args.cluster_config, args.chunk_size,
                                getattr(args, "trust_code", False))
    settings.check()
    return settings
