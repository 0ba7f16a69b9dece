"""Channels of the reference model: appending new ones to 7net-mf-0, and the theta_C / theta_T split.

sevenn gives every channel ("modality") a one-hot that is appended as an ``Nx0e`` block to the input of
some linear layers (self-interaction 1 and 2 of every interaction block, and the readout's first layer).
The weights that multiply that block are the task-specific parameters theta_T of the SevenNet-Omni
recipe: one row per channel and output scalar.  They live inside the same flat e3nn weight tensor as the
shared weights theta_C, so the split is a boolean mask over each such tensor.

The per-channel, per-element energy shift (``rescale_atomic_energy.shift``) is task-specific too, but it
is a fixed statistic in sevenn (``train_shift_scale`` is False: a fit of each channel's energies on
composition, done once when the channel is appended); it is neither trained nor regularised here.
"""

from __future__ import annotations

import tempfile
import uuid
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.io import write

#: sevenn config keys that name data files; an appended config must not carry temporary paths along.
_DATA_PATH_SUFFIX = "_path"


def sanitize(value: Any) -> Any:
    """Plain Python types and tensors only, so ``torch.load(weights_only=True)`` can read the config back."""
    if isinstance(value, dict):
        return {key: sanitize(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [sanitize(item) for item in value]
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def append_channels(base_model: str, channel_frames: dict[str, list[Atoms]]) -> tuple[dict, dict]:
    """The base model with one new channel per key of ``channel_frames``, via sevenn's ``append_modal``.

    sevenn keeps the old channels' shifts and starts the new channels' one-hot rows at zero, rescaling the
    old scalar weights so that the old channels predict exactly what they did.  Its shift statistic for
    the new channels (``elemwise_reference_energies``) is a ridge fit (alpha 0.1) made for pseudopotential
    energies of a few eV per atom; on all-electron PBE0 energies (Cl about -12500 eV) the ridge bias alone
    is several eV per atom, so the new channels' shifts are replaced by the plain least-squares fit of
    :func:`element_reference_energies`.  Returns the sevenn config (sanitized) and the model state dict.
    """
    import sevenn._keys as KEY
    from sevenn.util import load_checkpoint

    checkpoint = load_checkpoint(base_model)
    config = checkpoint.config
    # from_config derives the new channels' modal map from the data; append_modal then puts it after the
    # old one, so the old channels keep their indices.
    config.pop(KEY.MODAL_MAP, None)
    _drop_data_paths(config)
    config[KEY.SHIFT] = "elemwise_reference_energies"
    config[KEY.DATA_FORMAT_ARGS] = {}
    config[KEY.PREPROCESS_NUM_CORES] = 1
    with tempfile.TemporaryDirectory(prefix="omni-append-") as work:
        files = []
        for channel, frames in channel_frames.items():
            if not frames:
                raise ValueError(f"channel {channel} has no frames to compute its energy shift from")
            path = Path(work) / f"{channel}.extxyz"
            write(path, frames, format="extxyz")
            files.append({"data_modality": channel, "file_list": [{"file": str(path)}]})
        config[KEY.LOAD_TRAINSET] = files
        with warnings.catch_warnings():  # torch_geometric retries its own cache file without weights_only
            warnings.filterwarnings("ignore", message="Weights only load failed")
            state = checkpoint.append_modal(config, working_dir=work)
    _drop_data_paths(config)
    config["omni_base_model"] = base_model
    state = {key: value.detach().clone() for key, value in state.items()}
    for channel, frames in channel_frames.items():
        reference = element_reference_energies(frames)
        row = state["rescale_atomic_energy.shift"][config[KEY.MODAL_MAP][channel]]
        row.zero_()  # elements without data in this channel get no shift, as in sevenn
        univ = [0.0] * len(config[KEY.SHIFT][channel])
        for z, energy in reference.items():
            row[config[KEY.TYPE_MAP][z]] = energy
            univ[z] = energy
        config[KEY.SHIFT][channel] = univ
    return sanitize(config), state


def _drop_data_paths(config: dict) -> None:
    """Remove the keys that name data files (``load_*_path``): the base model's, or our temporary ones."""
    for key in [k for k in config if k.startswith("load_") and k.endswith(_DATA_PATH_SUFFIX)]:
        config.pop(key)


def element_reference_energies(frames: list[Atoms], energies: list[float] | None = None) -> dict[int, float]:
    """Per-element energies (eV) by least squares of the frames' energies (or ``energies``, one per frame)
    on their composition."""
    elements = sorted({int(z) for atoms in frames for z in atoms.numbers})
    composition = np.array([[np.count_nonzero(atoms.numbers == z) for z in elements] for atoms in frames], float)
    if energies is None:
        energies = [atoms.get_potential_energy() for atoms in frames]
    energies = np.asarray(energies, float)
    solution = np.linalg.lstsq(composition, energies, rcond=None)[0]
    return {z: float(e) for z, e in zip(elements, solution, strict=True)}


def build_model(config: dict, state: dict) -> torch.nn.Module:
    """A sevenn model from a config and state dict, through the same path sevenn's own loader takes."""
    from sevenn.model_build import build_E3_equivariant_model

    model = build_E3_equivariant_model(dict(config))
    model.load_state_dict(state, strict=True)
    return model


def modal_linears(model: torch.nn.Module) -> dict[str, Any]:
    """The linear layers that take the channel one-hot, by parameter name of their weight."""
    from sevenn.nn.linear import IrrepsLinear

    return {f"{name}.linear.weight": module for name, module in model.named_modules()
            if isinstance(module, IrrepsLinear) and module.num_modalities > 1}


def channel_rows(model: torch.nn.Module, channel: str) -> dict[str, torch.Tensor]:
    """Boolean masks (per weight tensor) of the entries that multiply ``channel``'s one-hot input."""
    modal_map: dict[str, int] = model.modal_map
    if channel not in modal_map:
        raise KeyError(f"unknown channel {channel!r}; the model has {sorted(modal_map)}")
    masks = {}
    for name, module in modal_linears(model).items():
        linear = module.linear
        modal_block = len(linear.irreps_in) - 1  # sevenn appends the one-hot as the last irrep
        if linear.irreps_in[modal_block].mul != module.num_modalities or linear.irreps_in[modal_block].ir.l != 0:
            raise ValueError(f"{name}: last input irrep {linear.irreps_in[modal_block]} is not the channel one-hot")
        index = torch.arange(linear.weight.numel(), device=linear.weight.device)
        mask = torch.zeros(linear.weight.numel(), dtype=torch.bool, device=linear.weight.device)
        for instruction, view in zip(linear.instructions, linear.weight_views(weight=index), strict=True):
            if instruction.i_in == modal_block:
                mask[view[modal_map[channel]].reshape(-1)] = True
        masks[name] = mask.reshape(linear.weight.shape)
    return masks


def task_specific_mask(model: torch.nn.Module, channels: list[str] | None = None) -> dict[str, torch.Tensor]:
    """theta_T as masks over the weight tensors: the rows of ``channels`` (default: every channel)."""
    channels = list(model.modal_map) if channels is None else channels
    union: dict[str, torch.Tensor] = {}
    for channel in channels:
        for name, mask in channel_rows(model, channel).items():
            union[name] = union[name] | mask if name in union else mask
    return union


def warm_start(model: torch.nn.Module, config: dict, source: str, channel_frames: dict[str, list[Atoms]],
               source_energies: dict[str, np.ndarray]) -> None:
    """Start each new channel as a copy of ``source``: its one-hot rows take the source's values, and its
    per-element shift becomes the source's plus the least-squares fit of (label - source prediction).

    A new channel then predicts, before any training, the source channel's energies shifted per element:
    on the PBE0 training molecules 7net-mf-0's PBE channel plus a shift is about 30 meV/atom off, the shift
    alone about 170 meV/atom.  (The energy scale is shared by all channels in sevenn, so copying the rows
    copies the prediction.)  ``source_energies[channel]`` holds the source channel's energy of every frame."""
    import sevenn._keys as KEY

    parameters = dict(model.named_parameters())
    source_rows = channel_rows(model, source)
    shift = parameters["rescale_atomic_energy.shift"]
    with torch.no_grad():
        for channel, frames in channel_frames.items():
            for name, mask in channel_rows(model, channel).items():
                parameters[name][mask] = parameters[name][source_rows[name]]
            residual = [frame.get_potential_energy() - float(energy)
                        for frame, energy in zip(frames, source_energies[channel], strict=True)]
            row = shift[model.modal_map[channel]]
            row.copy_(shift[model.modal_map[source]])
            type_map = {int(z): int(index) for z, index in config[KEY.TYPE_MAP].items()}
            for z, energy in element_reference_energies(frames, residual).items():
                row[type_map[z]] += energy
            config[KEY.SHIFT][channel] = [0.0] * len(config[KEY.SHIFT][channel])
            for z, index in type_map.items():
                config[KEY.SHIFT][channel][z] = float(row[index])


def selective_penalty(model: torch.nn.Module, masks: dict[str, torch.Tensor],
                      anchor: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """sum((theta_T - anchor) ** 2) over the masked entries only (anchor: zero, the paper's L2 on theta_T, or
    the warm-started rows, so that the penalty keeps a channel near its start rather than pulling it to no
    channel at all); multiply by lambda outside.  theta_C gets no gradient."""
    parameters = dict(model.named_parameters())
    terms = [(parameters[name][mask] - (anchor[name] if anchor else 0.0)).square().sum()
             for name, mask in masks.items()]
    return torch.stack(terms).sum()


def shipped_checkpoint(config: dict, model: torch.nn.Module, epoch: int, recipe: dict) -> dict:
    """What the shipped file holds: config, float32 weights, epoch and the recipe; no optimizer state."""
    state = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
    return {"config": sanitize(config), "model_state_dict": state, "epoch": epoch,
            "time": datetime.now().strftime("%Y-%m-%d %H:%M"), "hash": uuid.uuid4().hex,
            "omni_recipe": sanitize(recipe)}


def load_model(path: str | Path) -> torch.nn.Module:
    """The model from a shipped checkpoint through sevenn's own loader (what SevenNetCalculator does)."""
    from sevenn.util import load_checkpoint

    return load_checkpoint(str(path)).build_model()
