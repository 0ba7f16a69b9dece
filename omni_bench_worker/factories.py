"""Calculator factories for the model zoo's cards (``omni_bench/models/cards``). Each imports its model
package inside the function, so this module imports in any environment; the card's ``environment`` says
which one has the package. Weights that a package downloads on first use need internet the first time;
a local file can always be given instead (``--model-arg model=/path/to/file``)."""

from __future__ import annotations

from pathlib import Path


def mace(model: str, head: str | None = None, device: str = "cpu", default_dtype: str = "float64"):
    """A MACE calculator. ``model``: a model file, a MACE-MP family name that mace-torch downloads on first
    use ('medium', 'medium-omat-0', 'mh-1', ...; see mace.calculators.foundations_models.mace_mp_urls), or
    'off23-small|medium|large' for MACE-OFF23. ``head``: the head of a multi-head model, checked (mace-torch
    itself falls back to the last head, with only a warning, when the name is wrong)."""
    import mace as _mace  # noqa: F401  first: it lets torch load e3nn 0.4.4's constants
    from mace.calculators import MACECalculator, mace_off
    from mace.calculators.foundations_models import download_mace_mp_checkpoint, mace_mp_names

    options = {"head": head} if head else {}
    if model.startswith("off23-"):
        calc = mace_off(model=model[len("off23-"):], device=device, default_dtype=default_dtype, **options)
    else:
        if Path(model).expanduser().is_file():
            path = str(Path(model).expanduser())
        elif model in mace_mp_names:
            path = download_mace_mp_checkpoint(model)
        else:
            raise FileNotFoundError(f"{model!r} is neither a model file nor a name mace-torch knows "
                                    f"({', '.join(str(n) for n in mace_mp_names if n)})")
        calc = MACECalculator(model_paths=path, device=device, default_dtype=default_dtype, **options)
    if head and calc.head != head:
        raise ValueError(f"the model has no head {head!r}; its heads: {', '.join(calc.available_heads)}")
    return calc


def fairchem(model: str = "uma-s-1p1", task_name: str | None = None, device: str = "cpu"):
    """A fairchem (UMA) calculator for one task; the weights come from Hugging Face (a gated repository:
    accept the licence and log in with ``huggingface-cli login`` once), or ``model`` is a checkpoint file.
    For the omol task, charge and spin multiplicity are read from ``Atoms.info['charge']`` and ``['spin']``,
    omni-bench's own convention."""
    from fairchem.core import FAIRChemCalculator, pretrained_mlip

    predictor = pretrained_mlip.get_predict_unit(model, device=device)
    return FAIRChemCalculator(predictor, task_name=task_name)


def orb(model: str = "orb-v3-conservative-inf-omat", device: str = "cpu", precision: str = "float32-high",
        weights: str | None = None):
    """An Orb calculator; ``model`` names one of orb-models' ``ORB_PRETRAINED_MODELS`` (its architecture; the
    weights are downloaded by orb-models on first use), ``weights`` a local checkpoint of that model instead
    (orb-models reads it with ``torch.load(weights_only=True)``)."""
    from orb_models.forcefield import pretrained
    from orb_models.forcefield.calculator import ORBCalculator

    if model not in pretrained.ORB_PRETRAINED_MODELS:
        raise ValueError(f"orb-models has no model {model!r}; it has {', '.join(pretrained.ORB_PRETRAINED_MODELS)}")
    local = {"weights_path": str(Path(weights).expanduser())} if weights else {}
    return ORBCalculator(pretrained.ORB_PRETRAINED_MODELS[model](device=device, precision=precision, **local),
                         device=device)


def mattersim(model: str = "MatterSim-v1.0.0-5M.pth", device: str = "cpu"):
    """A MatterSim calculator; ``model`` is 'MatterSim-v1.0.0-1M.pth' or '-5M.pth' (downloaded by mattersim on
    first use into ~/.local/mattersim/pretrained_models) or a checkpoint file."""
    from mattersim.forcefield import MatterSimCalculator

    return MatterSimCalculator.from_checkpoint(load_path=model, device=device)


def pet_mad(version: str = "latest", device: str = "cpu", checkpoint: str | None = None):
    """A PET-MAD calculator: weights downloaded by pet-mad from Hugging Face on first use, or ``checkpoint``,
    a local file (pet-mad then ignores ``version``)."""
    from pet_mad.calculator import PETMADCalculator

    local = {"checkpoint_path": str(Path(checkpoint).expanduser())} if checkpoint else {}
    return PETMADCalculator(version=version, device=device, **local)


def diep(model: str | None = None, device: str = "cpu"):
    """The DIEP potential trained on MatPES r2SCAN: its weights ship inside the ``diep`` wheel
    (``diep/pretrained_models/diep_fold1``); ``model`` may name another exported model folder."""
    from diep.pretrained import make_calculator

    return make_calculator(model, device=device)
