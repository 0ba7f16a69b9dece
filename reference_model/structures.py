"""Training geometries for the reference model: small molecules, their perturbations, dimers, crystals.

Everything is seeded, so the same call gives the same structures on any machine, and labelling can
resume by structure id.  The molecules are chosen to stay clear of the benchmark tasks (no S22, X23,
ICE13 or OpenFF molecule; no benchmark crystal composition): ``tests/test_reference_training_set.py``
checks that by composition and bonding graph against every task's structures.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from .overlap import bond_set

#: name -> SMILES.  Closed-shell, neutral, H C N O F S Cl; none of them is a benchmark molecule.
MOLECULES: dict[str, str] = {
    "butan-2-one": "CCC(C)=O", "ethanol": "CCO", "propan-1-ol": "CCCO", "propan-2-ol": "CC(C)O",
    "dimethyl-ether": "COC", "propionitrile": "CCC#N", "isobutene": "C=C(C)C", "isobutane": "CC(C)C",
    "propene": "C=CC", "cyclopropane": "C1CC1", "acetaldehyde": "CC=O", "formaldehyde": "C=O",
    "acetone": "CC(C)=O", "methyl-formate": "COC=O", "methylamine": "CN", "dimethylamine": "CNC",
    "ethylamine": "CCN", "methyl-acetate": "CC(=O)OC", "nitromethane": "C[N+](=O)[O-]", "hydroxylamine": "NO",
    "hydrazine": "NN", "glycolaldehyde": "OCC=O", "1,2-difluoroethane": "FCCF", "n-methylformamide": "CNC=O",
    "propanal": "CCC=O", "acrolein": "C=CC=O", "furan": "c1ccoc1", "pyrrole": "c1cc[nH]c1",
    "oxirane": "C1CO1", "aziridine": "C1CN1", "butadiene": "C=CC=C", "propyne": "C#CC",
    "fluoromethane": "CF", "fluoroethane": "CCF", "chloroethane": "CCCl", "dichloromethane": "ClCCl",
    "methanethiol": "CS", "dimethyl-sulfide": "CSC", "ethanethiol": "CCS", "1,1-difluoroethene": "C=C(F)F",
    "fluoroform": "FC(F)F", "chloroethene": "C=CCl", "methyl-vinyl-ether": "COC=C", "oxetane": "C1COC1",
}

#: Molecules of MOLECULES that a benchmark task also has (found by the overlap check when the tautomers task
#: arrived).  They stay in MOLECULES so that the seeded random stream, and every other geometry, is unchanged;
#: :func:`omni_bench_reference.training_set.pools` drops every frame that contains one.
IN_BENCHMARK_TASKS: frozenset[str] = frozenset({"acetaldehyde", "acetone", "pyrrole", "butan-2-one"})

#: name -> (space group, basis symbols, basis fractional positions, a in A, supercell repeat).  Replay
#: crystals: ternary perovskites and (half-)Heuslers, the starting model's own domain, kept so that training
#: molecules does not erase it.  No task has these compositions (binaries are in elastic-moduli and
#: heat-capacity: every one tried was).
CRYSTALS: dict[str, tuple[int, list[str], list[tuple[float, float, float]], float, tuple[int, int, int]]] = {
    "SrTiO3": (221, ["Sr", "Ti", "O"], [(0.5, 0.5, 0.5), (0, 0, 0), (0.5, 0, 0)], 3.905, (2, 1, 1)),
    "BaZrO3": (221, ["Ba", "Zr", "O"], [(0.5, 0.5, 0.5), (0, 0, 0), (0.5, 0, 0)], 4.19, (2, 1, 1)),
    "KTaO3": (221, ["K", "Ta", "O"], [(0.5, 0.5, 0.5), (0, 0, 0), (0.5, 0, 0)], 3.99, (2, 1, 1)),
    "KMgF3": (221, ["K", "Mg", "F"], [(0.5, 0.5, 0.5), (0, 0, 0), (0.5, 0, 0)], 3.99, (2, 1, 1)),
    "TiNiSn": (216, ["Ti", "Sn", "Ni"], [(0, 0, 0), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)], 5.94, (2, 2, 1)),
    "ZrNiSn": (216, ["Zr", "Sn", "Ni"], [(0, 0, 0), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)], 6.11, (2, 2, 1)),
    "LiZnAs": (216, ["Li", "As", "Zn"], [(0, 0, 0), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)], 5.94, (2, 2, 1)),
    "Fe2VAl": (225, ["V", "Al", "Fe"], [(0, 0, 0), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)], 5.76, (2, 2, 1)),
}


def embed(name: str, smiles: str, n_conformers: int, seed: int) -> list[Atoms]:
    """MMFF-relaxed rdkit conformers of one molecule (fewer when rdkit finds fewer distinct ones)."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    conformer_ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=n_conformers, params=params))
    if not conformer_ids:
        raise RuntimeError(f"rdkit could not embed {name} ({smiles})")
    AllChem.MMFFOptimizeMoleculeConfs(mol, maxIters=500)
    symbols = [atom.GetSymbol() for atom in mol.GetAtoms()]
    conformers = []
    for cid in conformer_ids:
        positions = mol.GetConformer(cid).GetPositions()
        atoms = Atoms(symbols, positions=positions)
        atoms.info.update(molecule=name, smiles=smiles, charge=0, spin=1)
        conformers.append(atoms)
    return conformers


def perturb(atoms: Atoms, rng: np.random.Generator, sigma: float, stretch: float) -> Atoms:
    """Rattle every atom by N(0, sigma) A and scale the whole molecule by (1 + stretch): off-equilibrium
    geometries give the force labels something to learn from.  Draws again (up to 50 times) until the
    bond graph is the molecule's own: a broken bond would make an open-shell fragment, not a distortion."""
    bonds = bond_set(atoms)
    centre = atoms.positions.mean(axis=0)
    for _ in range(50):
        out = atoms.copy()
        out.positions = centre + (out.positions - centre) * (1.0 + stretch)
        out.positions += rng.normal(0.0, sigma, out.positions.shape)
        if bond_set(out) == bonds:
            return out
    raise RuntimeError(f"no perturbation of {atoms.info.get('molecule')} with sigma {sigma} keeps its bonds")


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    a, b, c, d = q / np.linalg.norm(q)
    return np.array([
        [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
    ])


def dimer(first: Atoms, second: Atoms, rng: np.random.Generator, contact: float) -> Atoms:
    """Two molecules in random orientations, moved apart along a random axis until their closest atoms
    are ``contact`` A apart: non-covalent contacts from repulsive to weakly bound."""
    a = first.copy()
    b = second.copy()
    a.positions = (a.positions - a.positions.mean(axis=0)) @ random_rotation(rng).T
    b.positions = (b.positions - b.positions.mean(axis=0)) @ random_rotation(rng).T
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    shift = 0.0
    for _ in range(400):
        gap = np.min(np.linalg.norm(a.positions[:, None] - (b.positions + shift * axis)[None], axis=-1))
        if gap >= contact:
            break
        shift += 0.05
    b.positions += shift * axis
    pair = a + b
    pair.info.update(molecule=f"{first.info['molecule']}+{second.info['molecule']}", charge=0, spin=1,
                     contact=round(contact, 3), n_first=len(first))
    return pair


def fragments(pair: Atoms) -> tuple[Atoms, Atoms]:
    """The two molecules of a :func:`dimer` at their geometry in it (for interaction energies)."""
    n_first = int(pair.info["n_first"])
    first, second = pair[:n_first], pair[n_first:]
    for part, name in zip((first, second), pair.info["molecule"].split("+"), strict=True):
        part.info = {"molecule": name, "charge": 0, "spin": 1}
    return first, second


def crystal(name: str, rng: np.random.Generator, strain: float, sigma: float) -> Atoms:
    """A small supercell of the primitive cell, isotropically strained by ``strain`` (volume fraction) and
    rattled by N(0, sigma) A."""
    from ase.spacegroup import crystal as from_spacegroup

    spacegroup, symbols, basis, a, repeat = CRYSTALS[name]
    atoms = from_spacegroup(symbols, basis, spacegroup=spacegroup, cellpar=[a, a, a, 90, 90, 90],
                            primitive_cell=True).repeat(repeat)
    atoms.set_cell(atoms.cell * (1.0 + strain) ** (1.0 / 3.0), scale_atoms=True)
    atoms.positions += rng.normal(0.0, sigma, atoms.positions.shape)
    atoms.info.update(crystal=name)
    return atoms
