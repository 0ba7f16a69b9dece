"""Calculator factories for the built-in model cards. Heavy imports happen inside each function."""

from __future__ import annotations

from ase.calculators.calculator import Calculator

from ..devices import resolve_device
from .pyscf_dft import DEFAULTS


def emt(device: str = "cpu") -> Calculator:
    from ase.calculators.emt import EMT

    return EMT()


def sevennet(model: str, device: str = "auto", modal: str | None = None, **kwargs) -> Calculator:
    """A SevenNet calculator from a checkpoint path; ``modal`` picks the channel of a multi-task model."""
    import warnings

    from sevenn.calculator import SevenNetCalculator

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*accelerat.*")
        return SevenNetCalculator(model=model, device=resolve_device(device), modal=modal, **kwargs)


def chgnet(model_name: str = "0.3.0", device: str = "auto") -> Calculator:
    import chgnet.model.model as chgnet_model
    from chgnet.model import CHGNet, CHGNetCalculator

    device = resolve_device(device)
    model = CHGNet.load(model_name=model_name, use_device=device, verbose=False)
    chgnet_model.torch = FirstOrderTorch()
    return CHGNetCalculator(model=model, use_device=device)


class FirstOrderAutograd:
    """torch.autograd, except that ``grad`` never builds a graph of the gradient (``create_graph=False``)."""

    @staticmethod
    def grad(*args, **kwargs):
        import torch

        return torch.autograd.grad(*args, **{**kwargs, "create_graph": False})

    def __getattr__(self, name):
        import torch

        return getattr(torch.autograd, name)


class FirstOrderTorch:
    """torch as chgnet.model.model sees it, with ``FirstOrderAutograd``. CHGNet's forward asks autograd for
    ``create_graph=True`` (needed only to train on forces and stresses); without it the energy is bitwise the
    same, forces and stresses equal to float32 rounding (1e-5 eV/A), and a 1,024-atom phonon supercell takes
    6.5 GB of memory instead of 21.8 (BeRh, heat-capacity), which a 24 GB machine could not hold."""

    autograd = FirstOrderAutograd()

    def __getattr__(self, name):
        import torch

        return getattr(torch, name)


def gfn2_xtb(device: str = "cpu") -> Calculator:
    from tblite.ase import TBLite

    return TBLite(method="GFN2-xTB", verbosity=0)


def dftd3_bj(functional: str) -> Calculator:
    """DFT-D3(BJ) for ``functional`` from the dftd3 package: runs on CPU, unlike sevenn's CUDA-only D3."""
    from dftd3.ase import DFTD3

    return DFTD3(method=functional, damping="d3bj")


class TabulatedCalculator(Calculator):
    """Returns an energy stored on the structure (``atoms.info[key]``, eV) instead of computing one.

    It lets every protocol be checked against published numbers: feed it the reference DFT energies and
    the protocol must reproduce the published errors of that DFT method.
    """

    implemented_properties = ["energy", "free_energy"]

    def __init__(self, key: str, **kwargs):
        super().__init__(**kwargs)
        self.key = key

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        if self.key not in self.atoms.info:
            raise KeyError(f"structure has no tabulated energy atoms.info[{self.key!r}]")
        energy = float(self.atoms.info[self.key])
        self.results = {"energy": energy, "free_energy": energy}


def tabulated(key: str, device: str = "cpu") -> Calculator:
    return TabulatedCalculator(key)


def pyscf_dft(device: str = "cpu", xc: str = DEFAULTS["xc"], basis: str = DEFAULTS["basis"],
              density_fitting: str = DEFAULTS["density_fitting"], grids_level: int = DEFAULTS["grids_level"],
              conv_tol_hartree: float = DEFAULTS["conv_tol_hartree"]) -> Calculator:
    """Hybrid DFT (PySCF) with the settings of :mod:`omni_bench.models.pyscf_dft` (a reference method)."""
    from omni_bench.models.pyscf_dft import PySCFDFT

    return PySCFDFT(xc=xc, basis=basis, density_fitting=density_fitting, grids_level=grids_level,
                    conv_tol_hartree=conv_tol_hartree)
