"""The model side of omni-bench's worker processes: runs in the model's own Python environment.

A model whose dependencies clash with omni-bench's (mace-torch pins e3nn 0.4.4, sevenn needs e3nn >= 0.5)
runs in a worker process started in its own interpreter. This package is all that process imports besides
ASE, numpy and the model: it depends on nothing else, and omni-bench loads it into the worker from its own
installation (``omni_bench/models/worker.py``), so the model's environment needs no install step for it
and both sides always speak the same protocol version.
"""

#: raised whenever the messages change: omni-bench refuses a worker that speaks another version
PROTOCOL_VERSION = 1


def main(argv: list[str]) -> int:
    """``probe JSON`` (needs only the standard library) or ``FD`` (serve a model over that socket)."""
    if argv[:1] == ["probe"]:
        import json

        from .probe import probe

        print(json.dumps(probe(json.loads(argv[1]))))
        return 0
    from .server import serve_fd

    return serve_fd(int(argv[0]))
