"""omni-bench: cross-domain benchmarks for universal machine-learning interatomic potentials.

The Python API (``omni_bench.api``): ``evaluate`` a model name, card or ASE calculator on tasks and suites;
``leaderboard`` and ``report`` of results folders and bundles. Imported on first use, so ``import omni_bench``
stays light."""

from .version import __version__

__all__ = ["__version__", "evaluate", "leaderboard", "report"]


def __getattr__(name: str):
    if name in ("evaluate", "leaderboard", "report"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'omni_bench' has no attribute {name!r}")
