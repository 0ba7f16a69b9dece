"""omni-bench: cross-domain benchmarks for universal machine-learning interatomic potentials."""

__version__ = "0.1.0"
