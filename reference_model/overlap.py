"""Is any training structure a benchmark structure?  Compared by composition and bonding geometry.

Molecules (and the molecules inside dimers, complexes and molecular crystals) are compared by formula
plus a Weisfeiler-Lehman hash of their bond graph (bonds from covalent radii), so another conformer or a
perturbed copy of a benchmark molecule still counts as that molecule.  Extended crystals are compared by
reduced formula, so a strained or rattled copy of a benchmark crystal's composition counts too.
"""

from __future__ import annotations

from collections.abc import Iterable

import networkx as nx
import numpy as np
from ase import Atoms
from ase.neighborlist import natural_cutoffs, neighbor_list

#: bonds up to this multiple of the summed covalent radii: loose enough that a rattled training molecule
#: stays in one piece, tight enough that hydrogen bonds and dimers' contacts are not bonds
BOND_TOLERANCE = 1.3
#: a periodic component larger than this is an extended solid, not a molecule
MAX_MOLECULE_ATOMS = 60


def bond_set(atoms: Atoms) -> set[tuple[int, int]]:
    """Bonded pairs (i <= j; i == j: an atom bonded to its own periodic image): closer than
    ``BOND_TOLERANCE`` times their summed covalent radii."""
    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=BOND_TOLERANCE))
    return {(a, b) for a, b in zip(i.tolist(), j.tolist(), strict=True) if a <= b}


def _components(atoms: Atoms) -> tuple[list[list[int]], nx.Graph]:
    graph = nx.Graph()
    graph.add_nodes_from(range(len(atoms)))
    graph.add_edges_from(bond_set(atoms))
    return [sorted(c) for c in nx.connected_components(graph)], graph


def _molecule_key(atoms: Atoms, indices: list[int], graph: nx.Graph) -> str:
    symbols = atoms.get_chemical_symbols()
    sub = graph.subgraph(indices).copy()
    nx.set_node_attributes(sub, {k: symbols[k] for k in indices}, "element")
    formula = Atoms([symbols[k] for k in indices]).get_chemical_formula("hill")
    return f"{formula}:{nx.weisfeiler_lehman_graph_hash(sub, node_attr='element', iterations=4)}"


def _reduced_formula(atoms: Atoms) -> str:
    return atoms.get_chemical_formula("hill", empirical=True)


#: fingerprints by structure (elements, positions, cell, periodicity): tasks that share a computation (a CPU
#: subset, a second reference) hold the same structures, which are fingerprinted once
_SEEN: dict[bytes, tuple[frozenset[str], frozenset[str]]] = {}


def fingerprints(atoms: Atoms) -> tuple[frozenset[str], frozenset[str]]:
    """(molecule keys, extended-crystal reduced formulas) found in one structure."""
    key = b"|".join(np.ascontiguousarray(a).tobytes() for a in (atoms.numbers, atoms.positions, atoms.cell.array,
                                                                atoms.pbc))
    if key not in _SEEN:
        _SEEN[key] = _fingerprints(atoms)
    return _SEEN[key]


def _fingerprints(atoms: Atoms) -> tuple[frozenset[str], frozenset[str]]:
    components, graph = _components(atoms)
    molecules = {_molecule_key(atoms, c, graph) for c in components if len(c) <= MAX_MOLECULE_ATOMS}
    periodic_solid = atoms.pbc.any() and any(len(c) > MAX_MOLECULE_ATOMS for c in components)
    small_cell_solid = atoms.pbc.all() and len(components) == 1 and not _is_gas_box(atoms)
    crystals = {_reduced_formula(atoms)} if periodic_solid or small_cell_solid else set()
    return frozenset(molecules), frozenset(crystals)


def _is_gas_box(atoms: Atoms) -> bool:
    """A single molecule in a big periodic box (gas-phase references of lattice-energy tasks)."""
    extent = np.ptp(atoms.positions, axis=0) if len(atoms) > 1 else np.zeros(3)
    return bool(np.all(atoms.cell.lengths() > extent + 6.0))


def collect(structures: Iterable[Atoms]) -> tuple[set[str], set[str]]:
    molecules: set[str] = set()
    crystals: set[str] = set()
    for atoms in structures:
        m, c = fingerprints(atoms)
        molecules |= m
        crystals |= c
    return molecules, crystals


def overlaps(training: Iterable[Atoms], benchmark: tuple[set[str], set[str]]) -> list[str]:
    """Training molecules and crystals that also occur in the benchmark (``collect`` of its structures)."""
    return _shared(collect(training), benchmark)


def _shared(training: tuple[set[str], set[str]], benchmark: tuple[set[str], set[str]]) -> list[str]:
    (train_molecules, train_crystals), (bench_molecules, bench_crystals) = training, benchmark
    return ([f"molecule {key}" for key in sorted(train_molecules & bench_molecules)]
            + [f"crystal {formula}" for formula in sorted(train_crystals & bench_crystals)])


def tasks_sharing_structures(training: list[Atoms], task_structures: dict[str, list[Atoms]]) -> list[str]:
    """The tasks (name -> their structures) with a molecule or crystal the training set has: the model is
    in-domain there, which its card declares (``in_domain``) so that reports mark those results."""
    train = collect(training)
    return sorted(name for name, structures in task_structures.items() if _shared(train, collect(structures)))
