"""Regenerate omni_bench/datasets.sha256 from a verified data root and its UPSTREAM.tsv.

    python scripts/build_dataset_index.py ../shared/data

One line per file that is a byte-identical copy of an upstream file: sha256, size, path under the data root,
and path inside the dataset's repository (datasets.yaml names the repository and commit). Files derived
locally (UPSTREAM.tsv status 'derived') are left out: nothing can fetch them, so no task may need them.
Only hashes, sizes and paths are recorded: the data itself stays in the data root.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import yaml

from omni_bench.data import sha256_file

PACKAGE = Path(__file__).resolve().parent.parent / "omni_bench"


def index_lines(root: Path) -> list[str]:
    """The index lines, after checking each file against UPSTREAM.tsv and datasets.yaml."""
    datasets = yaml.safe_load((PACKAGE / "datasets.yaml").read_text())
    with open(root / "UPSTREAM.tsv", newline="") as fh:
        upstream = {row["local_path"]: row for row in csv.DictReader(fh, delimiter="\t")}
    lines = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if "/" not in rel:  # top-level MANIFEST.md, SHA256SUMS, UPSTREAM.tsv are not part of a dataset
            continue
        row = upstream.get(rel)
        if row is None:
            raise SystemExit(f"{rel}: not in {root / 'UPSTREAM.tsv'}; add its upstream source there")
        if row["status"] != "identical":
            continue
        name = rel.split("/", 1)[0]
        meta = datasets.get(name)
        if meta is None or (meta["repo"], meta["commit"]) != (row["repo"], row["commit"]):
            raise SystemExit(f"{rel}: comes from {row['repo']}@{row['commit']}, but datasets.yaml gives "
                             f"{name} {meta and meta['repo']}@{meta and meta['commit']}")
        digest = sha256_file(path)
        if digest != row["sha256"]:
            raise SystemExit(f"{rel}: sha256 {digest} differs from UPSTREAM.tsv's {row['sha256']}")
        lines.append(f"{digest}  {path.stat().st_size}  {rel}  {row['upstream_path']}")
    return lines


def main(root: Path) -> None:
    lines = index_lines(root)
    out = PACKAGE / "datasets.sha256"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} files to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
