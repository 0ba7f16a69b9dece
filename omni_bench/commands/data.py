"""``omni-bench data list|verify|fetch``: the reference datasets."""

from __future__ import annotations

import argparse

HELP = "reference datasets: list, verify, fetch"


def add_arguments(data_cmd: argparse.ArgumentParser) -> None:
    data_sub = data_cmd.add_subparsers(dest="data_command", required=True)
    for name, text in (("list", "datasets, sizes, and whether present and verified"),
                       ("verify", "sha256 of every file; non-zero exit if any is missing or corrupted"),
                       ("fetch", "download datasets from the mirror, resuming and verifying")):
        p = data_sub.add_parser(name, help=text)
        p.add_argument("names", nargs="*" if name != "fetch" else "+", metavar="DATASET")
        p.add_argument("--data-dir", help="reference data root (default: $OMNI_BENCH_DATA, then the user cache)")
        if name == "fetch":
            p.add_argument("--mirror", help="URL or local folder holding the datasets (default: $OMNI_BENCH_MIRROR)")


def run(args) -> int:
    from .. import data, datasets
    from ..fetch import fetch_dataset, resolve_mirror

    root, origin = data.resolve_data_root(args.data_dir)
    chosen = [datasets.get(n) for n in args.names] or list(datasets.registry().values())
    if args.data_command == "fetch":
        mirror = resolve_mirror(args.mirror)
        failed = 0
        for dataset in chosen:
            print(f"{dataset.name}: fetching {len(dataset.files)} files ({dataset.size / 1e6:.1f} MB) into {root}")
            report = fetch_dataset(dataset, root, mirror)
            failed += len(report.failed)
            print(f"{dataset.name}: {len(report.fetched)} fetched, {len(report.already_present)} already "
                  f"present, {len(report.failed)} failed" + (f", extracted {len(report.extracted)} archives"
                                                           if report.extracted else ""))
        return 1 if failed else 0
    print(f"data root: {root} ({origin})")
    problems = 0
    for dataset in chosen:
        state = datasets.status(root, dataset) if root.is_dir() else {"missing": [f.path for f in dataset.files]}
        bad = {k: v for k, v in state.items() if k != "ok" and v}
        problems += sum(len(v) for v in bad.values())
        verdict = "verified" if not bad else ", ".join(f"{len(v)} {k}" for k, v in bad.items())
        print(f"{dataset.name:<34} {len(dataset.files):>5} files {dataset.size / 1e6:>7.2f} MB  {verdict}")
        if args.data_command == "verify":
            for kind, paths in bad.items():
                for path in paths:
                    print(f"  {kind}: {path}")
    return 1 if problems and args.data_command == "verify" else 0


