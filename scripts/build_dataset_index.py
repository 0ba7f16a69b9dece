"""Regenerate omni_bench/datasets.sha256 (sha256, size, path per file) from a verified data root.

    python scripts/build_dataset_index.py ../shared/data

Only hashes and sizes are recorded: the data itself stays in the data root.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omni_bench.data import sha256_file


def main(root: Path) -> None:
    lines = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if "/" not in rel:  # top-level MANIFEST.md and SHA256SUMS are not part of a dataset
            continue
        lines.append(f"{sha256_file(path)}  {path.stat().st_size}  {rel}")
    out = Path(__file__).resolve().parent.parent / "omni_bench" / "datasets.sha256"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} files to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
