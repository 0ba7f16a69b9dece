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

dask-jobqueue writes the cluster fields into a shell script (the ``#SBATCH`` lines and the worker's command
line) without quoting them. The fields in ``PLAIN_FIELDS`` are checked to be plain values; every other field
(``job_script_prologue``, ``job_extra_directives``, ``python``, ``worker_extra_args``, ...) can run commands,
and needs ``--trust-code``.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import OmniBenchError, did_you_mean, unknown
from ..schema import Fields, load_yaml
from .settings import INSTALL_HINT

SYSTEMS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster",
           "htcondor": "HTCondorCluster", "oar": "OARCluster", "moab": "MoabCluster"}
_FIELDS = {"system": False, "jobs": False, "adapt": False, "cluster": True}
#: cluster fields that hold a number or one plain word (``PLAIN_TEXT``), and the types each takes
PLAIN_FIELDS: dict[str, tuple[type, ...]] = {
    "queue": (str,), "account": (str,), "project": (str,), "walltime": (str,), "cores": (int,),
    "processes": (int,), "memory": (str, int), "job_cpu": (int,), "job_mem": (str,), "job_name": (str,),
    "name": (str,), "nanny": (bool,), "interface": (str,), "protocol": (str,), "death_timeout": (int, float, str),
    "local_directory": (str,), "log_directory": (str,), "resource_spec": (str,), "n_workers": (int,),
    "silence_logs": (str, bool), "ncpus": (int,), "mem": (str, int), "disk": (str,), "lsf_units": (str,),
    "use_stdin": (bool,),
}
#: one word that the shell and sbatch read as it is: no spaces, quotes, ';', '|', '&', '$(...)' or newlines
#: (``$NAME`` and ``${NAME}``, such as ``local_directory: $TMPDIR``, expand to the job's environment)
PLAIN_TEXT = re.compile(r"(?:[A-Za-z0-9_.:/@%+=,~-]|\$[A-Za-z_]\w*|\$\{[A-Za-z_]\w*\})+", re.ASCII)


@dataclass
class ClusterConfig:
    path: Path
    system: str
    jobs: int | None
    adapt: dict[str, Any] | None
    cluster: dict[str, Any]


def load_cluster_config(path: Path, trust_code: bool = False) -> ClusterConfig:
    """Read a cluster config strictly; fields that can run commands need ``trust_code`` (see the module doc)."""
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
    _check_cluster_fields(Path(path), cluster, trust_code)
    if "cores" in cluster:
        cluster.setdefault("processes", cluster["cores"])
    return ClusterConfig(Path(path), system, jobs, adapt, cluster)


def _check_cluster_fields(path: Path, cluster: dict[Any, Any], trust_code: bool) -> None:
    for key, value in cluster.items():
        kinds = PLAIN_FIELDS.get(key) if isinstance(key, str) else None
        if kinds is None:
            shown = key if isinstance(key, str) and key.isprintable() else repr(key)
            what = (f"{path}: field 'cluster.{shown}' is not one of the plain fields omni-bench checks"
                    f"{did_you_mean(str(key), PLAIN_FIELDS)}, so it may put commands into the batch script or the "
                    "worker's command line")
            if not trust_code:
                raise OmniBenchError(f"{what}; pass --trust-code if you trust the file")
            print(f"omni-bench: warning: --trust-code: {what}; passing it on", file=sys.stderr)
        elif (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            names = " or ".join(kind.__name__ for kind in kinds)
            raise OmniBenchError(f"{path}: field 'cluster.{key}' must be {names}, got {value!r}")
        elif isinstance(value, str) and not PLAIN_TEXT.fullmatch(value):
            raise OmniBenchError(f"{path}: field 'cluster.{key}' must be one word of letters, digits and "
                                 f"_.:/@%+=,~- (or $NAME), got {value!r}: it is written into a shell script")


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


def start_cluster(path: Path, workers: int | None = None, trust_code: bool = False):
    """Start the cluster and submit its jobs: ``workers`` (from --workers) wins over the file's jobs."""
    config = load_cluster_config(path, trust_code)
    cluster = make_cluster(config)
    if workers:
        cluster.scale(n=workers)
    elif config.adapt is not None:
        cluster.adapt(**config.adapt)
    else:
        cluster.scale(jobs=config.jobs or 1)
    return cluster
