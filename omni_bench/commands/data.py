"""``omni-bench data list|verify|fetch|mirror``: the reference datasets."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..arguments import path_argument
from ..errors import OmniBenchError

if TYPE_CHECKING:
    from ..fetch import FetchSettings

HELP = "reference datasets: list, verify, fetch from their sources, build a mirror"


def add_arguments(data_cmd: argparse.ArgumentParser) -> None:
    data_sub = data_cmd.add_subparsers(dest="data_command", required=True)
    for name, text in (("list", "datasets: size, licence, source, citation, and whether present and verified"),
                       ("verify", "sha256 of every file; non-zero exit if any is missing or corrupted"),
                       ("fetch", "download datasets from their upstream sources (or a mirror), resuming and "
                                 "verifying"),
                       ("mirror", "copy verified datasets into a folder laid out like the upstream sources "
                                  "(OWNER/REPO/COMMIT/PATH), to serve as OMNI_BENCH_MIRROR")):
        p = data_sub.add_parser(name, help=text, description=text)
        p.add_argument("names", nargs="*", metavar="DATASET", help="datasets (default: all)" if name != "fetch"
                       else "datasets to fetch")
        p.add_argument("--data-dir", type=path_argument,
                       help="reference data root (default: $OMNI_BENCH_DATA, then the user cache)")
        if name == "fetch":
            p.add_argument("--all", action="store_true", help="fetch every dataset")
            p.add_argument("--mirror", help="base URL or folder laid out as OWNER/REPO/COMMIT/PATH (default: "
                                            "$OMNI_BENCH_MIRROR, then GitHub's raw files)")
            p.add_argument("--workers", type=int, default=8, help="concurrent downloads (default: %(default)s)")
            p.add_argument("--retries", type=int, default=5, help="retries of a failed or interrupted transfer, "
                                                                  "with doubling pauses (default: %(default)s)")
            p.add_argument("--no-progress", action="store_true", help="no progress bars")
        if name == "mirror":
            p.add_argument("--out", type=path_argument, required=True, help="folder to write the mirror into")


def fetch_settings(args) -> FetchSettings:
    from ..fetch import FetchSettings, resolve_source

    if args.workers < 1 or args.retries < 0:
        raise OmniBenchError("--workers must be at least 1 and --retries at least 0")
    return FetchSettings(source=resolve_source(args.mirror), retries=args.retries, workers=args.workers,
                         progress=not args.no_progress)


def run(args) -> int:
    from .. import data, datasets

    root, origin = data.resolve_data_root(args.data_dir)
    if args.data_command == "fetch" and not args.names and not args.all:
        raise OmniBenchError("name the datasets to fetch, or pass --all (see: omni-bench data list)")
    chosen = [datasets.get(n) for n in args.names] or list(datasets.registry().values())
    if args.data_command == "fetch":
        return _fetch(chosen, root, fetch_settings(args))
    if args.data_command == "mirror":
        return _mirror(chosen, root, args.out)
    print(f"data root: {root} ({origin})")
    problems = 0
    for dataset in chosen:
        state = datasets.status(root, dataset)
        bad = {k: v for k, v in state.items() if k != "ok" and v}
        problems += sum(len(v) for v in bad.values())
        verdict = "verified" if not bad else ", ".join(f"{len(v)} {k}" for k, v in bad.items())
        print(f"{dataset.name:<34} {len(dataset.files):>5} files {dataset.size / 1e6:>7.2f} MB  {verdict}")
        if args.data_command == "list":
            print(f"    licence: {dataset.license}   source: {dataset.source_url}\n    cite: {dataset.citation}")
        else:
            for kind, paths in bad.items():
                for path in paths:
                    print(f"  {kind}: {path}")
    if args.data_command == "list":
        total = sum(d.size for d in chosen)
        print(f"total: {sum(len(d.files) for d in chosen)} files, {total / 1e6:.1f} MB "
              "(fetch: omni-bench data fetch NAME... | --all)")
    return 1 if problems and args.data_command == "verify" else 0


def _fetch(chosen, root, settings) -> int:
    from ..fetch import GITHUB_RAW, fetch_dataset

    failed = 0
    for dataset in chosen:
        origin = dataset.source_url if settings.source == GITHUB_RAW else \
            f"the mirror {settings.source} (upstream: {dataset.source_url})"
        print(f"{dataset.name}: {len(dataset.files)} files ({dataset.size / 1e6:.2f} MB) from {origin} into {root}")
        print(f"  licence: {dataset.license}; cite: {dataset.citation}")
        if not dataset.licence_stated:
            print("  (no licence stated: fetched from its source for your own use; omni-bench does not "
                  "redistribute it)")
        report = fetch_dataset(dataset, root, settings)
        failed += len(report.failed)
        print(f"{dataset.name}: {len(report.fetched)} fetched ({report.bytes / 1e6:.2f} MB in "
              f"{report.seconds:.1f} s), {len(report.already_present)} already present, {len(report.failed)} failed"
              + (f", extracted {len(report.extracted)} archives" if report.extracted else ""))
    return 1 if failed else 0


def _mirror(chosen, root, out) -> int:
    from pathlib import Path

    from ..fetch import build_mirror

    if Path(out).exists() and not Path(out).is_dir():
        raise OmniBenchError(f"--out {out} is a file; give the folder to write the mirror into")
    copied, bad = build_mirror(chosen, root, Path(out))
    for line in bad:
        print(f"  {line}")
    print(f"mirror {out}: {copied} files copied from {root}"
          + (f"; {len(bad)} missing or corrupted, not copied (run: omni-bench data fetch)" if bad else ""))
    unlicensed = [d.name for d in chosen if not d.licence_stated]
    if unlicensed:
        print(f"note: {', '.join(unlicensed)} state no licence: serve this mirror only to your own users")
    print(f"use it: OMNI_BENCH_MIRROR={Path(out).resolve()} (or serve the folder over HTTP and give its URL)")
    return 1 if bad else 0
