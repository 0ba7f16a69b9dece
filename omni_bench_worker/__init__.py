"""The model side of omni-bench's worker processes: runs in the model's own Python environment.

A model whose dependencies clash with omni-bench's (mace-torch pins e3nn 0.4.4, sevenn needs e3nn >= 0.5)
runs in a worker process started in its own interpreter. This package is all that process imports besides
ASE, numpy, the model and omni-bench's dependency-free ``devices`` module (``omni_bench_module``): omni-bench
loads it into the worker from its own installation (``omni_bench/models/worker.py``), so the model's
environment needs no install step for it and both sides always speak the same protocol version.
"""

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

#: raised whenever the messages change: omni-bench refuses a worker that speaks another version
PROTOCOL_VERSION = 2


def main(argv: list[str]) -> int:
    """``probe JSON`` (needs only the standard library) or ``FD [pdeathsig]`` (serve a model over that socket;
    with ``pdeathsig``, die when the thread that started this process ends)."""
    if argv[:1] == ["probe"]:
        import json

        from .probe import probe

        print(json.dumps(probe(json.loads(argv[1]))))
        return 0
    from .server import serve_fd

    return serve_fd(int(argv[0]), pdeathsig=argv[1:2] == ["pdeathsig"])


def omni_bench_module(name: str) -> ModuleType:
    """``omni_bench.<name>``, a module of omni-bench that imports nothing beyond the standard library (one
    definition for both sides of the boundary): imported where omni-bench is installed, else loaded from the
    ``omni_bench`` folder beside this package, which is where omni-bench loads this package from."""
    try:
        return importlib.import_module(f"omni_bench.{name}")
    except ImportError:
        pass
    path = Path(__file__).resolve().parent.parent / "omni_bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"omni_bench_worker._omni_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
