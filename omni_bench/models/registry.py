"""Turns what the user typed (``7net-mf-0@R2SCAN+d3``, ``card.yaml``, ``pkg.mod:factory``, a plug-in
name) into model variants: a card, a channel and the D3 flag. Nothing here imports a model package."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import typing
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from ..errors import OmniBenchError, unknown
from ..safe_text import short_repr
from ..schema import RefusedYAML, parse_yaml
from .card import ModelCard, card_from_dict, load_card

ENTRY_POINT_GROUP = "omni_bench.models"
REFERENCE_MODEL = "omni"
D3_SUFFIX = "+d3"
#: the factories that build calculators, which a card or sweep file may name without --trust-code (besides the
#: plug-ins' entry points); a file gives each only the arguments its signature declares, of the declared types
CALCULATOR_FACTORIES = (
    *(f"omni_bench.models.factories:{name}" for name in ("emt", "sevennet", "chgnet", "gfn2_xtb", "tabulated",
                                                          "pyscf_dft")),
    *(f"omni_bench_worker.factories:{name}" for name in ("mace", "fairchem", "orb", "mattersim", "pet_mad", "diep")),
)


@dataclass
class ModelVariant:
    """One thing that gets its own results: a model, one of its channels, with or without D3."""

    card: ModelCard
    channel: str | None
    d3: bool = False
    args: dict[str, Any] = field(default_factory=dict)
    #: run the model in a worker process of this interpreter (``--isolate``): a crash fails one item, not the
    #: run. Results are the same as in-process, so they share the fingerprint and the stored items
    isolate: bool = False
    #: the user's ``--trust-code``: may run code a card or sweep file names, and load pickled checkpoints
    trust_code: bool = False
    #: what ``--trust-code`` let its card or sweep file name (recorded in the results JSON); None: nothing
    trusted_code: str | None = None
    #: an ASE calculator instance the Python API was given (``api.evaluate``): used as it is, in this process
    calculator: Any = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        return self.card.name + (f"@{self.channel}" if self.channel else "") + (D3_SUFFIX if self.d3 else "")


def builtin_cards() -> dict[str, Path]:
    """Cards shipped in omni_bench/models/cards, plus the bundled reference model's card (``omni``)."""
    folder = files("omni_bench.models") / "cards"
    cards = {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".yaml")}
    if importlib.util.find_spec("omni_bench_reference") is not None:
        reference_card = Path(str(files("omni_bench_reference") / "model_card.yaml"))
        if reference_card.is_file():
            cards[REFERENCE_MODEL] = reference_card
    return cards


def plugin_names() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def known_names() -> list[str]:
    return sorted(set(builtin_cards()) | set(plugin_names()))


def _plugin_card(name: str) -> ModelCard:
    (ep,) = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    obj = ep.load()
    card = dict(getattr(obj, "model_card", {}) or {})
    card.setdefault("name", name)
    card.setdefault("description", f"plug-in model from entry point {ep.value}")
    card.setdefault("factory", ep.value)
    card.setdefault("trained_with_dispersion", False)
    if not card.get("channels"):
        card.setdefault("level_of_theory", "not declared by the plug-in")
    return card_from_dict(card, f"entry point {ep.value}")


def _factory_card(spec: str) -> ModelCard:
    return card_from_dict({
        "name": spec, "description": f"ASE calculator from {spec}", "factory": spec,
        "level_of_theory": "not declared (use a model card to record it)", "trained_with_dispersion": False,
        "packages": [spec.split(":")[0].split(".")[0]],
    }, spec)


def allowed_factory(factory: str) -> bool:
    """Factories a card or sweep file may name without ``--trust-code``: omni-bench's calculator factories
    (``CALCULATOR_FACTORIES``) and those of installed plug-ins (the ``omni_bench.models`` entry points)."""
    if factory in CALCULATOR_FACTORIES:
        return True
    return factory in {ep.value.replace(" ", "") for ep in entry_points(group=ENTRY_POINT_GROUP)}


def factory_arguments(factory: str) -> dict[str, tuple[type, ...]]:
    """The arguments a factory of ``CALCULATOR_FACTORIES`` declares, each with the types its annotation
    allows (``str | None`` -> (str, NoneType)); ``**kwargs`` declares nothing."""
    module, _, attr = factory.partition(":")
    function = getattr(importlib.import_module(module), attr)
    hints = typing.get_type_hints(function)
    return {name: typing.get_args(hints[name]) or (hints[name],)
            for name, parameter in inspect.signature(function).parameters.items()
            if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)}


def _accepts(types: tuple[type, ...], value: Any) -> bool:
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types) or (float in types and isinstance(value, int))


def check_factory_args(card: ModelCard, given: dict[str, tuple[str, Any]], trust_code: bool) -> str | None:
    """What a card, sweep file or ``--model-arg`` gives a factory of ``CALCULATOR_FACTORIES`` (``given``: argument
    -> (where it was set, value)) must be an argument the factory declares, of a declared type: a file cannot
    hand a factory anything its author did not mean it to take. With ``--trust-code`` a mismatch is let
    through with a warning; returns what was let through (for the results JSON), or None."""
    if card.factory not in CALCULATOR_FACTORIES:
        return None
    declared = factory_arguments(card.factory)
    problems = []
    for name, (where, value) in given.items():
        if name not in declared:
            problems.append(f"{where} is not an argument of {card.factory} (it takes {', '.join(declared)}); "
                            "remove it")
        elif not _accepts(declared[name], value):
            kinds = " or ".join("null" if kind is type(None) else kind.__name__ for kind in declared[name])
            shown = short_repr(value)
            hint = "; quote it to pass text" if str in declared[name] and not isinstance(value, (list, dict)) else ""
            problems.append(f"{where} must be {kinds}, got {shown}{hint}")
    if not problems:
        return None
    if not trust_code:
        raise OmniBenchError(problems[0])
    print(f"omni-bench: warning: --trust-code: {'; '.join(problems)}; passing it on", file=sys.stderr)
    return "; ".join(problems)


def card_args_given(card: ModelCard) -> dict[str, tuple[str, Any]]:
    """The card's factory arguments, and its channel argument (channels are text), for ``check_factory_args``."""
    given = {name: (f"{card.source}: field 'args.{name}'", value) for name, value in card.args.items()}
    if card.is_multichannel:
        given[card.channel_arg] = (f"{card.source}: field 'channel_arg'", next(iter(card.channels)))
    return given


def check_file_factory(card: ModelCard, source: str, trust_code: bool) -> str | None:
    """A card or sweep file is data, not code: it may name only an allowed factory, and no interpreter to start
    (``python:``), unless the user passed ``--trust-code``. Returns what was trusted (for the results JSON), or
    None when nothing needed trust."""
    reasons = []
    if not allowed_factory(card.factory):
        reasons.append(f"names factory {card.factory!r}, which is neither one of omni-bench's calculator factories "
                       "nor a plug-in's")
    if card.python:
        reasons.append(f"names an interpreter to start (python: {card.python})")
    if not reasons:
        return None
    what = f"{source} {' and '.join(reasons)}"
    if not trust_code:
        raise OmniBenchError(f"{what}; a file cannot run code of its choosing: pass --trust-code if you trust "
                             "it, or use a built-in model, a plug-in, a managed 'environment:', or "
                             "--model package.module:factory")
    print(f"omni-bench: warning: --trust-code: {what}; running it", file=sys.stderr)
    trusted = [f"factory {card.factory}"] if not allowed_factory(card.factory) else []
    return f"{source}: " + "; ".join(trusted + ([f"python {card.python}"] if card.python else []))


def find_card(name: str) -> ModelCard:
    """The card for a built-in name, a card file, a plug-in, or ``package.module:factory``."""
    if name.endswith((".yaml", ".yml")):
        try:
            exists = Path(name).is_file()
        except OSError as exc:  # a name too long for the file system
            raise OmniBenchError(f"model card {name}: {exc.strerror or exc}; give the path of a card file") from None
        if not exists:
            raise OmniBenchError(f"model card {name} does not exist")
        return load_card(Path(name))
    builtin = builtin_cards()
    if name in builtin:
        return load_card(builtin[name])
    if name in plugin_names():
        return _plugin_card(name)
    if ":" in name and not name.startswith(":"):
        return _factory_card(name)
    raise unknown("model", name, known_names())


def parse_model_arg(text: str) -> tuple[str, Any]:
    """``k=v`` with v read as YAML, so numbers and booleans arrive typed."""
    key, sep, value = text.partition("=")
    if not sep or not key or not key.isprintable():
        raise OmniBenchError(f"--model-arg {text!r} must look like key=value, the key an argument name")
    try:
        return key, parse_yaml(value) if value else ""
    except RefusedYAML as exc:
        raise OmniBenchError(f"--model-arg {key}: the value is refused: {exc}") from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise OmniBenchError(f"--model-arg {text!r}: the value is not valid YAML ({problem}); quote it to pass "
                             f"text: {key}='\"{value}\"'") from None


def split_channel(base: str) -> tuple[str, str | None]:
    """``NAME@CHANNEL`` -> (NAME, CHANNEL); a card file's path may itself contain '@' (``runs@2/card.yaml``,
    ``card.yaml@PBE``): the channel is what follows the last '@' after the file name ends."""
    if base.endswith((".yaml", ".yml")) or "@" not in base:
        return base, None
    name, _, channel = base.rpartition("@")
    return name, channel


def resolve_models(specs: list[str], channels: list[str] | None = None, model_args: list[str] | None = None,
                   trust_code: bool = False, source: str | None = None,
                   isolate: bool = False) -> list[ModelVariant]:
    """Expand every ``--model`` (with ``@channel`` and ``+d3``) and ``--channel`` into variants. ``source``
    names the sweep file the specs come from: a file is data, so what it names is checked as a card file is."""
    extra_args = dict(parse_model_arg(a) for a in model_args or [])
    variants: list[ModelVariant] = []
    for spec in specs:
        d3 = spec.endswith(D3_SUFFIX)
        base = spec[: -len(D3_SUFFIX)] if d3 else spec
        name, inline_channel = split_channel(base)
        card = find_card(name)
        from_file = card.source if name.endswith((".yaml", ".yml")) else source
        given = {**card_args_given(card), **{k: (f"--model-arg {k}", v) for k, v in extra_args.items()}}
        trusted = "; ".join(filter(None, [check_file_factory(card, from_file, trust_code) if from_file else None,
                                          check_factory_args(card, given, trust_code)])) or None
        wanted = [inline_channel] if inline_channel is not None else list(channels or [])
        for channel in _channels_for(card, wanted):
            if d3 and not card.channel_info(channel).d3_functional:
                raise OmniBenchError(
                    f"model {card.name}{'@' + channel if channel else ''}: +d3 needs a D3 functional in the card "
                    "(d3_functional); this level of theory either includes dispersion already or has no D3 "
                    "parameters")
            variants.append(ModelVariant(card, channel, d3, {**card.args, **extra_args}, isolate, trust_code,
                                         trusted))
    return variants


def _channels_for(card: ModelCard, wanted: list[str]) -> list[str | None]:
    if not card.is_multichannel:
        if wanted and wanted != ["all"]:
            raise OmniBenchError(f"model {card.name} has no channels; drop --channel {wanted[0]}")
        return [None]
    if not wanted:
        if card.default_channel:
            return [card.default_channel]
        raise OmniBenchError(f"model {card.name} has channels {', '.join(card.channels)}: pick one with --channel")
    if "all" in wanted:
        return list(card.channels)
    for channel in wanted:
        if channel not in card.channels:
            raise OmniBenchError(
                f"model {card.name} has no channel {channel!r}; valid channels: {', '.join(card.channels)} "
                "(names are case-sensitive), or 'all'")
    return wanted
