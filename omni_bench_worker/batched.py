"""Batched energies for model packages that live in worker environments (omni-bench's own evaluators, for
sevenn and CHGNet, are in ``omni_bench/models/batched.py``). Same contract: ``energies(structures)`` gives
the energies (eV) the ASE calculator would give, computed in one forward pass without forces or stress.
Chosen by the calculator's exact type, looking only at packages the calculator already imported."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def evaluator_for(calc):
    mace_calculators = sys.modules.get("mace.calculators.mace")
    if mace_calculators is not None and type(calc) is mace_calculators.MACECalculator:
        if len(calc.models) == 1 and calc.model_type == "MACE" and not getattr(calc, "use_compile", False):
            return MACEBatch(calc)
    return None


class MACEBatch:
    """MACE: graphs built as ``MACECalculator`` builds them (same head, cutoff and element table), collated
    with mace's own torch_geometric, one forward pass with ``compute_force=False``."""

    name = "mace"

    def __init__(self, calc):
        self.calc = calc

    def supports(self, atoms) -> bool:
        return True

    def energies(self, structures: Sequence) -> list[float]:
        import torch
        from mace import data as mace_data
        from mace.tools import torch_geometric, torch_tools

        calc = self.calc
        calc.arrays_keys.update({calc.charges_key: "charges"})  # as MACECalculator does before each graph
        keyspec = mace_data.KeySpecification(info_keys=calc.info_keys, arrays_keys=calc.arrays_keys)
        with torch_tools.default_dtype(calc.default_dtype):
            graphs = [mace_data.AtomicData.from_config(
                mace_data.config_from_atoms(atoms, key_specification=keyspec, head_name=calc.head),
                z_table=calc.z_table, cutoff=calc.r_max, heads=calc.available_heads) for atoms in structures]
        batch = torch_geometric.Batch.from_data_list(graphs).to(calc.device)
        model = calc.models[0]
        dtype = next(model.parameters()).dtype
        data = batch.to_dict()
        for key, value in data.items():
            if torch.is_tensor(value) and torch.is_floating_point(value):
                data[key] = value.to(dtype=dtype)
        out = model(data, compute_force=False, compute_stress=False, training=False)
        return (out["energy"].detach().cpu().double() * calc.energy_units_to_eV).reshape(-1).tolist()
