"""Batch-queue clusters (Slurm, PBS, SGE, LSF, HTCondor, OAR) through dask-jobqueue, set up from a YAML
file, so that a cluster's queue, account and GPU requests live in a file next to the sweep, not in flags.

    system: slurm          # which dask-jobqueue cluster class (default: slurm)
    jobs: 4                # batch jobs to submit (or: adapt: {minimum_jobs: 0, maximum_jobs: 16})
    cluster:               # keyword arguments of dask_jobqueue.SLURMCluster, passed through
      queue: gpu
      cores: 4
      memory: 64GB
      walltime: "04:00:00"
      job_extra_directives: ["--gres=gpu:4"]

``processes`` defaults to ``cores``: single-threaded workers, one per core (or per GPU), as locally.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import OmniBenchError, unknown
from ..schema import Fields, load_yaml
from .settings import INSTALL_HINT

SYSTEMS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster",
           "htcondor": "HTCondorCluster", "oar": "OARCluster", "moab": "MoabCluster"}
_FIELDS = {"system": False, "jobs": False, "adapt": False, "cluster": True}


@dataclass
class ClusterConfig:
    path: Path
    system: str
    jobs: int | None
    adapt: dict[str, Any] | None
    cluster: dict[str, Any]


def load_cluster_config(path: Path) -> ClusterConfig:
    fields = Fields(Path(path), "", load_yaml(Path(path), "cluster config"), _FIELDS)
    system = fields.text("system", "slurm")
    if system not in SYSTEMS:
        raise unknown("batch system", system, SYSTEMS)
    jobs = fields.get("jobs", int)
    adapt = fields.get("adapt", dict)
    if jobs is not None and adapt is not None:
        fields.fail("adapt", "and 'jobs' exclude each other: a fixed number of jobs, or adaptive")
    if jobs is not None and jobs < 1:
        fields.fail("jobs", "must be at least 1")
    cluster = dict(fields.get("cluster", dict))
    if "cores" in cluster:
        cluster.setdefault("processes", cluster["cores"])
    return ClusterConfig(Path(path), system, jobs, adapt, cluster)


def expected_workers(config: ClusterConfig) -> int:
    """Workers once the jobs run (the most, when adaptive): batch jobs start after the work is cut up."""
    jobs = config.jobs or (config.adapt or {}).get("maximum_jobs") or 1
    return int(jobs) * int(config.cluster.get("processes", 1))


def make_cluster(config: ClusterConfig):
    """The dask-jobqueue cluster object (its scheduler runs here; no job is submitted yet)."""
    try:
        import dask_jobqueue
    except ImportError:
        raise OmniBenchError(f"--executor slurm needs dask-jobqueue: {INSTALL_HINT}") from None
    cls = getattr(dask_jobqueue, SYSTEMS[config.system])
    try:
        return cls(**config.cluster)
    except (TypeError, ValueError) as exc:
        raise OmniBenchError(f"{config.path}: field 'cluster' is not accepted by dask_jobqueue.{cls.__name__}: "
                             f"{exc}") from None


def start_cluster(path: Path, workers: int | None = None):
    """Start the cluster and submit its jobs: ``workers`` (from --workers) wins over the file's jobs."""
    config = load_cluster_config(path)
    cluster = make_cluster(config)
    if workers:
        cluster.scale(n=workers)
    elif config.adapt is not None:
        cluster.adapt(**config.adapt)
    else:
        cluster.scale(jobs=config.jobs or 1)
    return cluster
