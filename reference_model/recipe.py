"""The SevenNet-Omni training recipe: its settings, the multi-task loss and the per-channel validation.

Loss per batch (Huber on each term, as sevenn trains its multi-fidelity models):
  sum_f w_c(f) * [energy_weight * l(E_f / N_f) + force_weight * mean_atoms l(F) + stress_weight * l(sigma)]
averaged over the batch's frames (forces: over its atoms' components; stress, in GPa: summed over the
periodic frames' six components and divided by six times the frame count, so molecules add nothing), where
``w_c`` is the loss weight of the frame's channel.  The replay channels (PBE, R2SCAN: the starting model's
own predictions) thus come in with their own weights.  Selective regularisation adds
``lambda * sum(theta_T ** 2)`` (see :mod:`omni_bench_reference.channels`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from omni_bench.schema import Fields, load_yaml
from omni_bench.units import convert

REPO = Path(__file__).resolve().parent.parent
GPA_PER_EV_A3 = convert(1.0, "eV/A^3", "GPa")
MEV_PER_EV = convert(1.0, "eV", "meV")
MEV_PER_A_PER_EV_PER_A = convert(1.0, "eV/A", "meV/A")


@dataclass(frozen=True)
class RecipeConfig:
    """One training run.  The four ablation variants differ only in ``regularisation`` and ``dbs_fraction``."""

    name: str
    training_set: str  # extxyz; relative paths are relative to the repository root
    base_model: str = "7net-mf-0"
    new_channels: tuple[str, ...] = ("PBE0", "GFN2")
    seed: int = 20261121
    validation_fraction: float = 0.1
    max_structures_per_pool: int | None = None  # smoke runs: the first N structure ids of every pool
    epochs: int = 10
    batch_size: int = 8
    learning_rate: float = 5e-4
    lr_decay_per_epoch: float = 0.95
    channel_weights: dict[str, float] = field(default_factory=lambda: {"PBE0": 1.0, "GFN2": 1.0, "PBE": 1.0,
                                                                        "R2SCAN": 1.0})
    energy_weight: float = 1.0
    force_weight: float = 1.0
    stress_weight: float = 0.01
    huber_delta: float = 0.01
    regularisation: float = 0.0  # lambda of the selective L2 penalty on theta_T; 0 turns it off
    regularised_channels: tuple[str, ...] | None = None  # whose theta_T rows are penalised; None: all
    dbs_fraction: float = 0.0  # share of DBS frames in every batch; 0: DBS geometries keep one label only
    dbs_keep_channel: str = "GFN2"  # the label a DBS geometry keeps when the DBS is not mixed in
    warm_start_from: str | None = None  # start the new channels as copies of this old channel (rows and shift)
    patience: int | None = None  # early stopping: stop after this many epochs without a better validation loss
    min_delta: float = 0.0  # ... better meaning lower by more than this (loss units)
    device: str = "auto"
    threads: int | None = 1

    @classmethod
    def from_yaml(cls, path: str | Path) -> RecipeConfig:
        """The config file, read strictly (omni_bench.schema): an unknown key, or a number field given as text
        (a lambda as text would fail only inside the first backward pass), is an OmniBenchError."""
        fields = Fields(Path(path), "", load_yaml(Path(path), "recipe config"),
                        {f.name: f.name in ("name", "training_set") for f in dataclasses.fields(cls)})
        hints = typing.get_type_hints(cls)
        raw = {name: fields.get(name, kinds) if (kinds := _number_kinds(hints[name])) else value
               for name, value in fields.data.items()}
        for key in ("new_channels", "regularised_channels"):
            if raw.get(key) is not None:
                raw[key] = tuple(raw[key])
        return cls(**raw)

    @property
    def training_set_path(self) -> Path:
        path = Path(self.training_set)
        return path if path.is_absolute() else REPO / path

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def _number_kinds(hint: typing.Any) -> tuple[type, ...]:
    """What YAML may give for a number field: an int for a float too, and nothing for an optional one."""
    kinds = set(typing.get_args(hint)) if isinstance(hint, types.UnionType) else {hint}
    numbers = (int, float) if float in kinds else (int,) if int in kinds else ()
    return (*numbers, type(None)) if numbers and type(None) in kinds else numbers


def read_frames(path: Path, max_structures_per_pool: int | None = None) -> list[Atoms]:
    """The labelled frames; with a limit, only the first structure ids of every pool (all their labels)."""
    from ase.io import read

    if not path.is_file():
        raise FileNotFoundError(f"training set {path} not found (python -m omni_bench_reference.training_set assemble)")
    frames = read(path, index=":", format="extxyz")
    if max_structures_per_pool is None:
        return frames
    ids_by_pool: dict[str, set[str]] = {}
    for atoms in frames:
        ids_by_pool.setdefault(atoms.info["pool"], set()).add(atoms.info["id"])
    kept = {i for ids in ids_by_pool.values() for i in sorted(ids)[:max_structures_per_pool]}
    return [a for a in frames if a.info["id"] in kept]


def to_graph(atoms: Atoms, cutoff: float):
    """A sevenn graph with the frame's labels and its channel (``data_modality``) attached."""
    import sevenn._keys as KEY
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.train.dataload import atoms_to_graph

    graph = AtomGraphData.from_numpy_dict(atoms_to_graph(atoms, cutoff, transfer_info=False, y_from_calc=True))
    graph[KEY.DATA_MODALITY] = atoms.info["channel"]
    return graph


def collate(graphs: list):
    from torch_geometric.data import Batch

    return Batch.from_data_list(graphs)


def batch_loss(output, config: RecipeConfig) -> torch.Tensor:
    """The weighted multi-task loss of one evaluated batch (see the module docstring)."""
    import sevenn._keys as KEY

    channels = list(output[KEY.DATA_MODALITY])
    weights = torch.tensor([config.channel_weights[c] for c in channels], dtype=output[KEY.ENERGY].dtype,
                           device=output[KEY.ENERGY].device)
    huber = torch.nn.functional.huber_loss
    n_atoms = output[KEY.NUM_ATOMS]
    energy = huber(output[KEY.PRED_TOTAL_ENERGY] / n_atoms, output[KEY.ENERGY] / n_atoms, reduction="none",
                   delta=config.huber_delta)
    total = config.energy_weight * (weights * energy).mean()
    atom_weights = weights[output[KEY.BATCH]].unsqueeze(-1)
    force = huber(output[KEY.PRED_FORCE], output[KEY.FORCE], reduction="none", delta=config.huber_delta)
    total = total + config.force_weight * (atom_weights * force).mean()
    periodic = ~torch.isnan(output[KEY.STRESS]).any(dim=-1)
    if config.stress_weight and periodic.any():
        stress = huber(output[KEY.PRED_STRESS][periodic] * GPA_PER_EV_A3, output[KEY.STRESS][periodic] * GPA_PER_EV_A3,
                       reduction="none", delta=config.huber_delta)
        total = total + config.stress_weight * (weights[periodic].unsqueeze(-1) * stress).sum() / (6 * len(channels))
    return total


def validation_errors(model: torch.nn.Module, graphs: list, config: RecipeConfig,
                      device: torch.device) -> tuple[dict, float]:
    """Per channel: energy MAE (meV/atom), force MAE (meV/A, over components) and the frame count; and the
    training loss over all validation frames (what early stopping watches)."""
    import sevenn._keys as KEY

    model.eval()
    sums: dict[str, dict[str, float]] = {}
    loss, frames = 0.0, 0
    for start in range(0, len(graphs), config.batch_size):
        batch = graphs[start:start + config.batch_size]
        output = model(collate(batch).to(device))
        loss += float(batch_loss(output, config).detach()) * len(batch)
        frames += len(batch)
        energy_error = ((output[KEY.PRED_TOTAL_ENERGY] - output[KEY.ENERGY]) / output[KEY.NUM_ATOMS]).abs().detach()
        force_error = (output[KEY.PRED_FORCE] - output[KEY.FORCE]).abs().mean(dim=-1).detach()
        per_frame_force = torch.zeros(len(energy_error), dtype=force_error.dtype, device=force_error.device)
        per_frame_force.index_add_(0, output[KEY.BATCH], force_error)
        for k, channel in enumerate(output[KEY.DATA_MODALITY]):
            entry = sums.setdefault(channel, {"energy": 0.0, "force": 0.0, "atoms": 0, "frames": 0})
            entry["energy"] += float(energy_error[k])
            entry["force"] += float(per_frame_force[k])
            entry["atoms"] += int(output[KEY.NUM_ATOMS][k])
            entry["frames"] += 1
    errors = {channel: {"energy_mae_meV_per_atom": MEV_PER_EV * s["energy"] / s["frames"],
                        "force_mae_meV_per_A": MEV_PER_A_PER_EV_PER_A * s["force"] / s["atoms"], "frames": s["frames"]}
              for channel, s in sorted(sums.items())}
    return errors, loss / max(frames, 1)


def predict(model: torch.nn.Module, frames: list[Atoms], channel: str, cutoff: float, batch_size: int,
             device: torch.device) -> list[tuple[float, np.ndarray]]:
    import sevenn._keys as KEY

    model.eval()
    out = []
    for start in range(0, len(frames), batch_size):
        work = [a.copy() for a in frames[start:start + batch_size]]
        for atoms, source in zip(work, frames[start:start + batch_size], strict=True):
            atoms.calc = source.calc
            atoms.info["channel"] = channel
        output = model(collate([to_graph(a, cutoff) for a in work]).to(device))
        energies = output[KEY.PRED_TOTAL_ENERGY].detach().cpu().numpy()
        forces = output[KEY.PRED_FORCE].detach().cpu().numpy()
        counts = np.cumsum([0] + [len(a) for a in work])
        out.extend((float(energies[k]), forces[counts[k]:counts[k + 1]]) for k in range(len(work)))
    return out


def domain_b_errors(model: torch.nn.Module, dimers: list[Atoms], fragments: list[Atoms], channel: str,
                    cutoff: float, batch_size: int, device: torch.device) -> dict:
    """The channel's errors on held-out domain-B dimers against their own labels: energy (meV/atom), forces
    (meV/A, over components) and interaction energies E(dimer) - E(A) - E(B) at the dimer geometry
    (kcal/mol per dimer; both fragments must be labelled)."""
    if not dimers:
        return {}
    predicted = predict(model, dimers, channel, cutoff, batch_size, device)
    energy = [abs(e - a.get_potential_energy()) / len(a) for (e, _), a in zip(predicted, dimers, strict=True)]
    force = np.concatenate([np.abs(f - a.get_forces()).ravel() for (_, f), a in zip(predicted, dimers, strict=True)])
    by_parent: dict[str, list[Atoms]] = {}
    for part in fragments:
        by_parent.setdefault(part.info["parent"], []).append(part)
    complete = [(k, sorted(by_parent[a.info["id"]], key=lambda p: p.info["id"])) for k, a in enumerate(dimers)
                if len(by_parent.get(a.info["id"], [])) == 2]
    parts = [p for _, pair in complete for p in pair]
    part_energies = [e for e, _ in predict(model, parts, channel, cutoff, batch_size, device)] if parts else []
    ie_errors = []
    for n, (k, pair) in enumerate(complete):
        model_ie = predicted[k][0] - part_energies[2 * n] - part_energies[2 * n + 1]
        reference_ie = dimers[k].get_potential_energy() - sum(p.get_potential_energy() for p in pair)
        ie_errors.append(abs(model_ie - reference_ie))
    result = {"channel": channel, "dimers": len(dimers),
              "energy_mae_meV_per_atom": MEV_PER_EV * float(np.mean(energy)),
              "force_mae_meV_per_A": MEV_PER_A_PER_EV_PER_A * float(np.mean(force)),
              "interaction_dimers": len(ie_errors)}
    if ie_errors:
        result["interaction_energy_mae_kcal_per_mol"] = convert(float(np.mean(ie_errors)), "eV", "kcal/mol")
    return result


def count_frames(frames: list[Atoms]) -> dict[str, int]:
    channels, counts = np.unique([a.info["channel"] for a in frames], return_counts=True)
    return {str(c): int(n) for c, n in zip(channels, counts, strict=True)}
