"""``omni-bench list suites`` with the reference data present: under 1 s (issue 15, finding 16).

Listing reads the task files only (their declared ``counts``), imports no loader, protocol or model package
and opens no data file, so its time is the interpreter's start plus YAML. Timed as a fresh process, as a user
runs it; the limit is checked on the median CPU time (user + system) of that process over the rounds, which
other jobs on a shared machine inflate far less than its wall time (recorded too, in ``extra_info``).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_SECONDS = 1.0


def test_list_suites_is_fast_with_data_present(benchmark):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.setdefault("OMNI_BENCH_DATA", str(REPO.parent / "shared" / "data"))
    command = [sys.executable, "-m", "omni_bench.cli", "list", "suites"]

    cpu_seconds: list[float] = []

    def list_suites() -> str:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_seconds.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        return out

    benchmark.group = "listing"
    out = benchmark.pedantic(list_suites, rounds=5, warmup_rounds=1)
    assert "mor41 (95 molecules, 41 reactions)" in out
    median = statistics.median(cpu_seconds)
    benchmark.extra_info.update(cpu_seconds=cpu_seconds, wall_seconds=list(benchmark.stats.stats.data))
    assert median < MAX_SECONDS, f"list suites took {median:.2f} s of CPU (median), limit {MAX_SECONDS} s"
