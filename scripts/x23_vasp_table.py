"""Rebuild tasks/x23-vasp-energies.csv from the upstream VASP OUTCARs, for anyone who has them.

    git clone https://github.com/water-ice-group/MolCrys-MACE && git -C MolCrys-MACE checkout 36a5da65
    python scripts/x23_vasp_table.py MolCrys-MACE/DFT-BENCHMARK            # writes the table
    python scripts/x23_vasp_table.py MolCrys-MACE/DFT-BENCHMARK --check    # compares with the shipped one

The OUTCARs (102 MB, 782 single points: 23 systems x gas/solid x 17 functionals) are too large to fetch
for every user, so the x23 tasks ship the few numbers they need, parsed here. Per OUTCAR: the number of ions
(NIONS), the last ``energy(sigma->0)`` and ``free energy TOTEN`` (the converged electronic step, printed
again in the final summary), and how many ``energy(sigma->0)`` lines the file has (a convergence record).
Numbers are copied as printed, so the table is byte-for-byte reproducible.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

TABLE = Path(__file__).resolve().parent.parent / "tasks" / "x23-vasp-energies.csv"
HEADER = """\
# VASP single points of the X23 crystals ('solid') and isolated molecules ('gas', in a large box) on the DMC
# paper's geometries with 17 functionals; energies in eV per cell; ENCUT 1000 eV. energy_sigma0_eV is the last
# energy(sigma->0), free_energy_TOTEN_eV the last free energy TOTEN; n_energy_lines_in_outcar counts the
# energy(sigma->0) lines (electronic steps + final summary).
# Source: github.com/water-ice-group/MolCrys-MACE @ 36a5da6583bdce806d4e5ece5c4c0e355076a887,
#   DFT-BENCHMARK/{gas,solid}/<system>/OUTCAR_<functional> (102 MB, not fetched); rebuilt by
#   scripts/x23_vasp_table.py. The repository states no licence: cite the paper.
# Paper: Kaur, Della Pia, Batatia, et al., "Data-efficient fine-tuning of foundational models for
#   first-principles quality sublimation enthalpies", Faraday Discuss. (2025).
system,phase,functional,n_atoms,energy_sigma0_eV,free_energy_TOTEN_eV,n_energy_lines_in_outcar
"""
_NIONS = re.compile(r"NIONS\s*=\s*(\d+)")
_SIGMA0 = re.compile(r"energy\(sigma->0\)\s*=\s*(-?\d+\.\d+)")
_TOTEN = re.compile(r"free\s+energy\s+TOTEN\s*=\s*(-?\d+\.\d+)")


def parse_outcar(text: str, name: str = "OUTCAR") -> tuple[int, str, str, int]:
    """(number of ions, last energy(sigma->0), last free energy TOTEN, number of energy(sigma->0) lines)."""
    ions, sigma0, toten = _NIONS.search(text), _SIGMA0.findall(text), _TOTEN.findall(text)
    if not ions or not sigma0 or not toten:
        raise SystemExit(f"{name}: no NIONS, energy(sigma->0) or TOTEN line; is it a complete VASP OUTCAR?")
    return int(ions.group(1)), sigma0[-1], toten[-1], len(sigma0)


def table(benchmark: Path) -> str:
    """The CSV text (header included) for a DFT-BENCHMARK folder: rows ordered by phase, system, functional."""
    rows = []
    for phase in ("gas", "solid"):
        for outcar in sorted((benchmark / phase).glob("*/OUTCAR_*"), key=lambda p: (p.parent.name, p.name)):
            functional = outcar.name.removeprefix("OUTCAR_")
            n_atoms, sigma0, toten, lines = parse_outcar(outcar.read_text(errors="replace"), str(outcar))
            rows.append(f"{outcar.parent.name},{phase},{functional},{n_atoms},{sigma0},{toten},{lines}\n")
    if not rows:
        raise SystemExit(f"{benchmark}: no gas/*/OUTCAR_* or solid/*/OUTCAR_* files")
    return HEADER + "".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("benchmark", type=Path, help="the DFT-BENCHMARK folder of MolCrys-MACE @ 36a5da65")
    parser.add_argument("--out", type=Path, default=TABLE, help="where to write (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = parser.parse_args(argv)
    text = table(args.benchmark)
    if args.check:
        same = args.out.read_text() == text
        print(f"{args.out}: {'identical to' if same else 'DIFFERS from'} the table parsed from {args.benchmark}")
        return 0 if same else 1
    args.out.write_text(text)
    print(f"wrote {text.count(chr(10)) - HEADER.count(chr(10))} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
