"""Build the reference model's labelled training set: ``python -m omni_bench_reference.training_set``.

The set is a small version of the SevenNet-Omni paper's cross-domain experiment (its Fig. 1c).  Domain A is
single molecules, labelled at PBE0 and GFN2; domain B is molecular dimers (non-covalent contacts), labelled at
GFN2 only except for the domain-bridging set.  Pools (all seeded, see :func:`pools`):

- ``pbe0``: domain-A molecules labelled with PBE0/def2-SVP (PySCF), the new hybrid-DFT channel;
- ``both``: domain-A molecules labelled at PBE0 and GFN2;
- ``gfn2``: domain-A molecules and domain-B dimers labelled with GFN2-xTB (tblite);
- ``dbs``: the domain-bridging set, domain-B dimers labelled at *both* PBE0 and GFN2;
- ``test_dimers`` and ``test_fragments``: held-out domain-B dimers and their two molecules at PBE0, never
  trained on: how well the PBE0 channel transfers into domain B (energies, forces, interaction energies);
- ``replay``: crystals and molecules labelled by the starting model (7net-mf-0) on its PBE and R2SCAN
  channels, so that training the new channels does not erase the old ones.

Labelling runs in chunks written atomically under ``data/.chunks/``; an interrupted run resumes where it
stopped, and a geometry already labelled in the committed training set reuses that label (so changing the
pools relabels only what is new).  ``assemble`` writes ``data/training_set.extxyz`` and its header
``data/training_set.yaml`` (levels, settings, code versions, counts, seconds per label).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from . import structures
from .labelling import labellers

DATA_DIR = Path(__file__).resolve().parent / "data"
TRAINING_SET = DATA_DIR / "training_set.extxyz"
HEADER = DATA_DIR / "training_set.yaml"
SEED = 20261121
CHUNK = 8
#: which labellers label which pool
POOL_LABELLERS = {"pbe0": ["pbe0"], "both": ["pbe0", "gfn2"], "gfn2": ["gfn2"], "dbs": ["pbe0", "gfn2"],
                  "test_dimers": ["pbe0"], "test_fragments": ["pbe0"], "replay": ["replay_pbe", "replay_r2scan"]}
#: pools that are never trained on
TEST_POOLS = ("test_dimers", "test_fragments")
BOTH_EVERY = 4  # every 4th domain-A PBE0 geometry is labelled at both levels


def _dimers(monomers: list[Atoms], rng: np.random.Generator, count: int, max_atoms: int) -> list[Atoms]:
    small = [m for m in monomers if len(m) <= max_atoms // 2]
    out = []
    for _ in range(count):
        i, j = rng.choice(len(small), size=2)
        out.append(structures.dimer(small[i], small[j], rng, contact=float(rng.uniform(1.9, 3.2))))
    return out


def _in_a_task(atoms: Atoms) -> bool:
    return bool(set(str(atoms.info.get("molecule", "")).split("+")) & structures.IN_BENCHMARK_TASKS)


def pools() -> dict[str, list[Atoms]]:
    """Every training geometry by pool, each with a unique ``info['id']``.

    The first random stream draws the geometries of the set's first version, unchanged; what was added
    later (more domain-A PBE0 frames, the DBS and test dimers, more GFN2 dimers) comes from a second stream,
    so the first version's labels stay valid."""
    rng = np.random.default_rng(SEED)
    relaxed = {name: structures.embed(name, smiles, 3, SEED) for name, smiles in structures.MOLECULES.items()}
    hybrid: list[Atoms] = []
    semi: list[Atoms] = []
    replay: list[Atoms] = []
    for conformers in relaxed.values():
        hybrid.append(conformers[0])
        hybrid.append(structures.perturb(conformers[0], rng, sigma=0.08, stretch=float(rng.uniform(-0.03, 0.03))))
        semi.extend(conformers[1:])
        for sigma in (0.03, 0.06, 0.1):
            semi.append(structures.perturb(conformers[-1], rng, sigma, stretch=float(rng.uniform(-0.04, 0.04))))
        replay.append(structures.perturb(conformers[0], rng, sigma=0.06, stretch=0.0))
    monomers = [c[0] for c in relaxed.values()]
    first_dimers = _dimers(monomers, rng, count=16, max_atoms=14)
    semi += _dimers(monomers, rng, count=50, max_atoms=20)
    for name in structures.CRYSTALS:
        for strain in (-0.06, -0.02, 0.02, 0.06):
            replay.append(structures.crystal(name, rng, strain=strain, sigma=0.05))

    added = np.random.default_rng([SEED, 2])
    kept = [m for m in monomers if not _in_a_task(m)]
    for name, conformers in relaxed.items():
        if name not in structures.IN_BENCHMARK_TASKS:
            for sigma in (0.04, 0.1):
                hybrid.append(structures.perturb(conformers[-1], added, sigma,
                                                 stretch=float(added.uniform(-0.04, 0.04))))
    bridging = first_dimers[::4] + _dimers(kept, added, count=24, max_atoms=14)
    test = [d for k, d in enumerate(first_dimers) if k % 4] + _dimers(kept, added, count=48, max_atoms=14)
    semi += _dimers(kept, added, count=60, max_atoms=20)

    out = {"pbe0": [a for k, a in enumerate(hybrid) if k % BOTH_EVERY], "both": hybrid[::BOTH_EVERY],
           "gfn2": semi, "dbs": bridging, "test_dimers": test, "replay": replay}
    out = {pool: [a for a in frames if not _in_a_task(a)] for pool, frames in out.items()}
    for pool, frames in out.items():
        for k, atoms in enumerate(frames):
            atoms.info["id"] = f"{pool}-{k:04d}"
            atoms.info["pool"] = pool
    out["test_fragments"] = []
    for pair in out["test_dimers"]:
        for part, tag in zip(structures.fragments(pair), "ab", strict=True):
            part.info.update(id=f"{pair.info['id']}{tag}", pool="test_fragments", parent=pair.info["id"])
            out["test_fragments"].append(part)
    return out


def _geometry_key(atoms: Atoms) -> tuple:
    return (tuple(atoms.numbers), tuple(np.round(atoms.positions, 4).ravel()),
            tuple(np.round(atoms.cell.array, 4).ravel()))


def _previous_labels() -> dict[tuple, Atoms]:
    """The committed training set's frames by (labeller, geometry): relabelling after a pool change
    recomputes only the geometries that are new."""
    if not TRAINING_SET.is_file():
        return {}
    return {(a.info["labeller"], _geometry_key(a)): a for a in read(TRAINING_SET, index=":", format="extxyz")}


def _chunk_path(labeller: str, pool: str, index: int) -> Path:
    return DATA_DIR / ".chunks" / labeller / pool / f"{index:04d}.extxyz"


def _labelled(atoms: Atoms, labeller_name: str, previous: dict[tuple, Atoms]) -> Atoms | None:
    labeller = labellers()[labeller_name]
    reused = previous.get((labeller_name, _geometry_key(atoms)))
    start = time.perf_counter()
    try:
        if reused is not None:
            energy, forces = reused.get_potential_energy(), reused.get_forces()
            stress = reused.get_stress() if atoms.pbc.any() else None
            seconds = reused.info.get("label_s")
        else:
            energy, forces, stress = labeller.compute(atoms)
            seconds = round(time.perf_counter() - start, 2)
    except Exception as error:  # a failed SCF drops one structure, not the run
        print(f"  {atoms.info['id']} ({labeller_name}): failed: {error}", file=sys.stderr)
        return None
    out = atoms.copy()
    out.info.update(channel=labeller.channel, labeller=labeller_name, dbs=atoms.info["pool"] == "dbs")
    if seconds is not None:
        out.info["label_s"] = seconds
    results = {"energy": energy, "forces": forces}
    if stress is not None:
        results["stress"] = stress
    out.calc = SinglePointCalculator(out, **results)
    return out


def label(labeller_names: list[str], max_chunks: int | None, pool_names: list[str] | None = None) -> None:
    """Label the pools that ``labeller_names`` cover, skipping chunks already on disk.  Calls on disjoint
    ``pool_names`` can run in parallel."""
    done = 0
    previous = _previous_labels()
    for pool, frames in pools().items():
        if pool_names and pool not in pool_names:
            continue
        for name in POOL_LABELLERS[pool]:
            if name not in labeller_names:
                continue
            for index in range(0, len(frames), CHUNK):
                path = _chunk_path(name, pool, index // CHUNK)
                if path.exists():
                    continue
                if max_chunks is not None and done >= max_chunks:
                    return
                start = time.perf_counter()
                labelled = [lab for atoms in frames[index:index + CHUNK] if (lab := _labelled(atoms, name, previous))]
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_suffix(".part")
                write(partial, labelled, format="extxyz")
                os.replace(partial, path)
                done += 1
                print(f"{name} {pool} {index + len(frames[index:index + CHUNK])}/{len(frames)} "
                      f"({time.perf_counter() - start:.1f} s)", flush=True)


def _label_cost(frames: list[Atoms]) -> dict:
    """Seconds per label (one thread, this machine), per labeller, over the frames whose time was recorded."""
    cost = {}
    for name in sorted({a.info["labeller"] for a in frames}):
        timed = [(len(a), float(a.info["label_s"])) for a in frames
                 if a.info["labeller"] == name and "label_s" in a.info]
        if timed:
            seconds = np.array([t for _, t in timed])
            cost[name] = {"frames_timed": len(timed), "median_s": round(float(np.median(seconds)), 2),
                          "total_s": round(float(seconds.sum()), 1), "max_atoms": max(n for n, _ in timed)}
    return cost


def assemble() -> dict:
    """Concatenate the chunks in a fixed order into the training set and write its header."""
    frames: list[Atoms] = []
    for pool, names in POOL_LABELLERS.items():
        for name in names:
            for path in sorted(_chunk_path(name, pool, 0).parent.glob("*.extxyz")):
                frames.extend(read(path, index=":", format="extxyz"))
    expected = {(a.info["id"], name) for pool, a_list in pools().items()
                for a in a_list for name in POOL_LABELLERS[pool]}
    present = {(a.info["id"], a.info["labeller"]) for a in frames}
    write(TRAINING_SET, frames, format="extxyz")
    all_labellers = labellers()
    header = {
        "command": ("python -m omni_bench_reference.training_set label && "
                    "python -m omni_bench_reference.training_set assemble"),
        "seed": SEED,
        "units": {"energy": "eV", "forces": "eV/A", "stress": "eV/A^3 (ASE sign convention, Voigt order)"},
        "labellers": {name: {"channel": lab.channel, "level_of_theory": lab.level_of_theory, "settings": lab.settings}
                      for name, lab in all_labellers.items()},
        "counts": {name: sum(a.info["labeller"] == name for a in frames) for name in all_labellers},
        "structures_by_pool": {pool: len({a.info["id"] for a in frames if a.info["pool"] == pool})
                               for pool in POOL_LABELLERS},
        "label_cost": _label_cost(frames),
        "dbs_structures": len({a.info["id"] for a in frames if a.info["dbs"]}),
        "missing_labels": sorted(f"{i}:{n}" for i, n in expected - present),
        "frames": len(frames),
    }
    HEADER.write_text(yaml.safe_dump(header, sort_keys=False))
    return header


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m omni_bench_reference.training_set",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    lab = sub.add_parser("label", help="label the pools (resumes; run it again after an interruption)")
    lab.add_argument("--labeller", action="append", choices=sorted(labellers()),
                     help="only these labellers (default: all)")
    lab.add_argument("--pool", action="append", choices=sorted(POOL_LABELLERS), help="only these pools (default: all)")
    lab.add_argument("--max-chunks", type=int, help=f"stop after this many chunks of {CHUNK} structures")
    sub.add_parser("assemble", help="write data/training_set.extxyz and its header from the labelled chunks")
    sub.add_parser("summary", help="print the pool sizes")
    args = parser.parse_args(argv)
    if args.command == "label":
        label(args.labeller or sorted(labellers()), args.max_chunks, args.pool)
    elif args.command == "assemble":
        print(yaml.safe_dump(assemble(), sort_keys=False))
    else:
        for pool, frames in pools().items():
            print(f"{pool:8s} {len(frames):4d} structures, {sum(len(a) for a in frames)} atoms, "
                  f"labellers {', '.join(POOL_LABELLERS[pool])}")


if __name__ == "__main__":
    main()
