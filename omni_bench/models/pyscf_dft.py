"""Hybrid DFT through PySCF as an ASE calculator: the reference rows beside the models (PBE0/def2-SVP on S22),
and the labeller of the reference model's PBE0 channel, so both use exactly the same settings.

Molecules only (no periodic cells): closed-shell restricted Kohn-Sham, or unrestricted when the spin
multiplicity (``atoms.info['spin']``) is above 1; density fitting for the Coulomb and exchange integrals.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from omni_bench.units import convert

DEFAULTS = {"xc": "PBE0", "basis": "def2-SVP", "density_fitting": "def2-universal-jkfit", "grids_level": 3,
            "conv_tol_hartree": 1e-10}


def energy_and_forces(atoms: Atoms, forces: bool = True, charge: int | None = None, multiplicity: int | None = None,
                      **settings) -> tuple[float, np.ndarray | None]:
    """Total energy (eV) and, when asked, forces (eV/A) of a molecule at the given settings (``DEFAULTS``);
    charge and spin multiplicity default to ``atoms.info['charge']`` and ``atoms.info['spin']``."""
    from pyscf import dft, gto

    if atoms.pbc.any():
        raise ValueError("the PySCF calculator runs molecules only (this structure is periodic)")
    options = {**DEFAULTS, **settings}
    multiplicity = int(atoms.info.get("spin", 1) if multiplicity is None else multiplicity)
    charge = int(atoms.info.get("charge", 0) if charge is None else charge)
    mol = gto.M(atom=[(s, tuple(p)) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions, strict=True)],
                unit="Angstrom", basis=options["basis"], charge=charge,
                spin=multiplicity - 1, verbose=0)
    mf = (dft.RKS(mol) if multiplicity == 1 else dft.UKS(mol)).density_fit(auxbasis=options["density_fitting"])
    mf.xc = options["xc"]
    mf.grids.level = options["grids_level"]
    mf.conv_tol = options["conv_tol_hartree"]
    energy = mf.kernel()
    if not mf.converged:
        raise RuntimeError("SCF did not converge")
    gradient = -np.asarray(mf.nuc_grad_method().kernel()) * convert(1.0, "Hartree/bohr", "eV/A") if forces else None
    return convert(energy, "Hartree", "eV"), gradient


class PySCFDFT(Calculator):
    """Energy and forces from :func:`energy_and_forces`; forces are computed only when asked for."""

    implemented_properties = ["energy", "free_energy", "forces"]
    default_parameters = {"charge": 0, "multiplicity": 1}  # omni-bench sets them per structure (charge_spin)

    def __init__(self, **settings):
        super().__init__()
        self.settings = {**DEFAULTS, **settings}

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        energy, forces = energy_and_forces(self.atoms, forces="forces" in properties,
                                           charge=self.parameters["charge"],
                                           multiplicity=self.parameters["multiplicity"], **self.settings)
        self.results = {"energy": energy, "free_energy": energy}
        if forces is not None:
            self.results["forces"] = forces
