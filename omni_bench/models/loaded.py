"""A model variant turned into a working calculator, behind the small interface protocols use.

Protocols ask for energies of structures; this adapter puts charge and spin from ``Atoms.info`` where the
model takes them (and notes where it cannot), boxes molecules for models that need a cell, adds D3, and
checks what the model returns (``checks.py``: finite energies, forces of shape (n, 3), stress) so that the
runner records a failure instead of a wrong number.

For models with a batched evaluator (models/batched.py) the runner first hands over the single points of
the next items (``prefetch``); ``energy`` then answers from those, keyed by everything the model sees, and
falls back to the ASE calculator for anything not prefetched.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.mixing import SumCalculator

from omni_bench_worker import server as worker_server

from ..devices import resolve_device
from ..errors import ItemTimeout, OmniBenchError
from .batched import AbandonBatches, BatchedEvaluator, default_batch_atoms, evaluate, evaluator_for, plan_batches
from .checks import CheckedCalculator, InvalidResult, checked_energy, checked_forces, checked_stress
from .factories import dftd3_bj
from .lockstep import Relaxed, RelaxSettings, relax_together
from .registry import ModelVariant
from .worker import WorkerCalculator, WorkerProcess, interpreter_for, worker_environment

CHARGE_SPIN_IGNORED = "charge/spin not passed: the model does not accept them"


class ImplausibleResult(RuntimeError):
    """The model returned a result outside its card's sanity bounds (a runaway SCF, a hole in a potential)."""


def import_factory(spec: str):
    try:
        return worker_server.import_factory(spec)
    except (ImportError, AttributeError) as exc:
        raise OmniBenchError(str(exc)) from None


class LoadedModel:
    """A ready calculator plus what protocols need: ``energy(atoms)`` and ``attach(atoms)``."""

    def __init__(self, variant: ModelVariant, device: str = "auto"):
        self.variant = variant
        self.device = resolve_device(device)
        self.base_calc = self._build()
        #: what protocols compute with: the model's calculator with its results checked, plus D3
        checked = CheckedCalculator(self.base_calc)
        self.calc: Calculator = checked
        self.d3_calc: Calculator | None = None
        if variant.d3:
            self.d3_calc = dftd3_bj(variant.card.channel_info(variant.channel).d3_functional)
            self.calc = SumCalculator([self.calc, self.d3_calc])
        self.notes: set[str] = set()
        #: energies served by each path ("batched", "ase") and structures the batched evaluator could not do
        #: ("batch_failed", then computed by the ASE path): the runner records them with the results
        self.evaluations: Counter[str] = Counter()
        #: model energies (eV, without D3) of prefetched structures, by ``structure_key``
        self._prefetched: dict[bytes, float] = {}
        self._evaluator: BatchedEvaluator | None = None
        if variant.card.charge_spin is None:  # batched evaluators do not pass charge and spin
            self._evaluator = evaluator_for(self.base_calc)
        #: why the batched evaluator was switched off (every structure of a prefetch failed in it)
        self.batched_error: str | None = None
        #: relaxations done ahead in lock-step (``prefetch_relaxations``), by ``relax_key``
        self._relaxed: dict[bytes, Relaxed] = {}
        #: checked energy, forces and stress (model only, no D3) computed ahead in batches, by ``structure_key``
        #: of the structure as a protocol's library will hand it to the calculator (``prefetch_answers``)
        self._answers: dict[bytes, dict] = {}
        #: atoms per batch where a protocol batches within an item (``prefetch_answers``): the runner's budget
        #: (``--batch-atoms``; 0 with ``--no-batch``), set when it computes items
        self.batch_atoms = default_batch_atoms(self.device)
        checked.answered = self._answer_for

    @property
    def batched_path(self) -> str | None:
        """The batched evaluator's name, or None when every energy goes through the ASE calculator."""
        return self._evaluator.name if self._evaluator else None

    def _build(self) -> Calculator:
        """The model's calculator: built here, or in a worker process (``models/worker.py``) for a card that
        names its own interpreter and for ``--isolate``."""
        card, variant = self.variant.card, self.variant
        if variant.calculator is not None:
            return variant.calculator
        interpreter = interpreter_for(card, variant.isolate)
        kwargs = self._factory_kwargs(None if interpreter is None else worker_environment(card))
        if interpreter is not None:
            try:
                return WorkerCalculator(WorkerProcess(interpreter, {"op": "load", "factory": card.factory,
                                                                    "kwargs": kwargs, "device": self.device},
                                                      variant.label))
            except OmniBenchError as exc:
                raise OmniBenchError(f"{exc}{card.load_hint()}") from None
        factory = import_factory(card.factory)
        kwargs = worker_server.with_device(factory, kwargs, self.device)
        try:
            return factory(**kwargs)
        except Exception as exc:  # any failure to build the model is the user's to fix, in one line
            raise OmniBenchError(f"model {variant.label}: {card.factory}(**{kwargs}) failed: "
                                 f"{type(exc).__name__}: {exc}{card.load_hint()}") from None

    def _factory_kwargs(self, environment) -> dict:
        """The card's arguments with the checkpoint path filled in, plus the channel."""
        card, variant = self.variant.card, self.variant
        checkpoint = card.resolve_checkpoint(environment.package_dirs if environment else None)
        kwargs = {k: (str(checkpoint) if v == "{checkpoint}" else v) for k, v in variant.args.items()}
        if variant.channel is not None:
            kwargs[card.channel_arg] = variant.channel
        return kwargs

    def attach(self, atoms: Atoms) -> Atoms:
        """A copy of ``atoms`` ready for this model, with the calculator attached."""
        atoms = self._prepare(atoms)
        atoms.calc = self.calc
        return atoms

    def _prepare(self, atoms: Atoms) -> Atoms:
        """A copy of ``atoms`` as the model sees it: charge and spin applied, molecules boxed."""
        atoms = atoms.copy()
        self._apply_charge_spin(atoms)
        box = self.variant.card.molecule_box
        if box and not atoms.pbc.any():
            atoms.center(vacuum=box)
        return atoms

    def energy(self, atoms: Atoms) -> float:
        """Potential energy in eV; raises ``InvalidResult`` for what is not a finite number (``NonFiniteResult``
        for NaN or infinity) and ``ImplausibleResult`` outside the card's sanity bounds."""
        prepared = self._prepare(atoms)
        value = self._prefetched.get(structure_key(prepared)) if self._prefetched else None
        if value is None:
            prepared.calc = self.calc
            value = float(prepared.get_potential_energy())
            self.evaluations["ase"] += 1
            self._check_charges(prepared)
        else:
            if self.d3_calc is not None:  # D3 is cheap and per structure: added as SumCalculator would
                prepared.calc = self.d3_calc
                value += float(prepared.get_potential_energy())
            self.evaluations["batched"] += 1
        value = checked_energy(value)
        bounds = self.variant.card.sanity.energy_per_atom
        if bounds and not bounds[0] <= value / len(prepared) <= bounds[1]:
            raise ImplausibleResult(f"energy {value / len(prepared):.4g} eV/atom is outside the card's sanity "
                                    f"bounds [{bounds[0]:g}, {bounds[1]:g}] eV/atom")
        return value

    def _check_charges(self, atoms: Atoms) -> None:
        """Partial charges beyond the card's bound mean the SCF ran away (GFN2-xTB on ROST61 m117: -6.1 e on
        Ti): the energy that comes with them is not a result."""
        bound = self.variant.card.sanity.max_abs_charge
        charges = self.base_calc.results.get("charges") if bound else None
        if charges is None:
            return
        worst = int(np.argmax(np.abs(charges)))
        if abs(charges[worst]) > bound:
            raise ImplausibleResult(f"partial charge {charges[worst]:+.2f} e on {atoms.get_chemical_symbols()[worst]} "
                                    f"(atom {worst}) exceeds the card's sanity bound of {bound:g} e: the SCF ran "
                                    "away to an unphysical state")

    def prefetch(self, structures: Iterable[Atoms], max_atoms: int) -> None:
        """Compute the energies of ``structures`` in batches of at most ``max_atoms`` atoms, for ``energy`` to
        return. Replaces what an earlier call prefetched (memory stays bounded); an empty list, a budget below
        one atom or a model without a batched evaluator only clears it. Structures the evaluator cannot take,
        or that fail even alone, are left to the ASE calculator."""
        self._prefetched = {}
        if self._evaluator is None or max_atoms < 1:
            return
        unique: dict[bytes, Atoms] = {}
        for atoms in structures:
            prepared = self._prepare(atoms)
            if self._evaluator.supports(prepared):
                unique.setdefault(structure_key(prepared), prepared)
        if not unique:
            return
        try:
            outcome = evaluate(self._evaluator, list(unique.values()), max_atoms)
        except AbandonBatches:
            return
        keys = list(unique)
        self._prefetched = {keys[position]: value for position, value in outcome.energies.items()}
        self.evaluations["batch_failed"] += len(outcome.errors)
        if outcome.errors and not outcome.energies:  # the evaluator does not work for this model at all
            self.batched_error = f"{self._evaluator.name}: {next(iter(outcome.errors.values()))}"
            self._evaluator = None

    @property
    def batched_forces(self) -> bool:
        """Whether ``energies_forces`` computes many structures in one call (else relaxations use the calculator)."""
        return self._evaluator is not None and hasattr(self._evaluator, "energies_forces")

    def energies_forces(self, prepared: list[Atoms], stress: bool = False) -> list[tuple]:
        """Energies (eV), forces (eV/A) and, with ``stress``, stress (Voigt, eV/A^3) of structures already
        prepared (``attach``), in one batched call, with D3 added per structure as ``SumCalculator`` adds it.
        Only when ``batched_forces``; ``InvalidResult`` when the evaluator's answer is not one finite energy,
        (n, 3) finite forces (and six finite stress components) per structure."""
        results = list(self._evaluator.energies_forces(prepared, stress=stress))
        if len(results) != len(prepared):
            raise InvalidResult(f"{self._evaluator.name} returned {len(results)} results for {len(prepared)} "
                                "structures")
        checked = []
        for answer, atoms in zip(results, prepared, strict=True):
            energy, forces, *extra = checked_answer(answer, len(atoms), stress)
            if self.d3_calc is not None:
                energy += self.d3_calc.get_potential_energy(atoms)
                forces = forces + self.d3_calc.get_forces(atoms)
                extra = (extra[0] + self.d3_calc.get_stress(atoms),) if stress else ()
            checked.append((energy, forces, *extra))
        self.evaluations["batched_forces"] += len(prepared)
        return checked

    def prefetch_relaxations(self, requests: Iterable[tuple[Atoms, RelaxSettings]], max_atoms: int) -> None:
        """Relax ``requests`` in lock-step (one batched force call per round for all of them, models/lockstep.py)
        for ``relax`` to answer from. Replaces what an earlier call relaxed. A structure that fails here is
        left out, for ``relax`` to run alone and fail (or not) as it would have without batching."""
        self._relaxed = {}
        if not self.batched_forces or max_atoms < 1:
            return
        groups: dict[RelaxSettings, dict[bytes, Atoms]] = {}
        for atoms, settings in requests:
            prepared = self._prepare(atoms)
            if self._evaluator.supports(prepared):
                groups.setdefault(settings, {}).setdefault(relax_key(prepared, settings), atoms)
        for settings, unique in groups.items():
            results = relax_together(self, list(unique.values()), settings.optimizer, settings.fmax,
                                     settings.max_steps, batched=True, max_atoms=max_atoms,
                                     relax_cell=settings.relax_cell, isolate_failures=True)
            self._relaxed.update({key: result for key, result in zip(unique, results, strict=True)
                                  if result.error is None})

    def prefetch_answers(self, structures: Iterable[Atoms]) -> None:
        """Energy, forces and stress of ``structures`` in batches of at most ``batch_atoms`` atoms, for the model's
        calculator to answer with when a library (matcalc's strain-stress fit) asks for exactly these
        structures one by one. Replaces what an earlier call computed; a batch that fails is left to the
        calculator, which then fails (or not) structure by structure as it would have without batching."""
        self._answers = {}
        if not self.batched_forces or self.batch_atoms < 1:
            return
        unique = {structure_key(atoms): atoms for atoms in structures}
        keys, given = list(unique), list(unique.values())
        prepared = [self._prepare(atoms) for atoms in given]
        for batch in plan_batches([len(atoms) for atoms in prepared], self.batch_atoms):
            try:
                answers = self._evaluator.energies_forces([prepared[i] for i in batch], stress=True)
                if len(answers) != len(batch):
                    raise InvalidResult(f"{len(answers)} answers for {len(batch)} structures")
                for i, answer in zip(batch, answers, strict=True):
                    energy, forces, stress = checked_answer(answer, len(prepared[i]), stress=True)
                    self._answers[keys[i]] = {"energy": energy, "free_energy": energy, "forces": forces,
                                              "stress": stress}
            except (KeyboardInterrupt, ItemTimeout):
                raise
            except Exception:  # out of memory, a structure the network cannot take: the calculator decides
                for i in batch:
                    self._answers.pop(keys[i], None)
        self.evaluations["batched_forces"] += len(self._answers)

    def _answer_for(self, atoms: Atoms) -> dict | None:
        """What ``prefetch_answers`` computed for exactly this structure (counted), else None."""
        answer = self._answers.get(structure_key(atoms)) if self._answers else None
        if answer is not None:
            self.evaluations["answered_ahead"] += 1
        return answer

    def relax(self, atoms: Atoms, settings: RelaxSettings) -> Relaxed:
        """``atoms`` relaxed with this model as ``settings`` say: the lock-step result when the runner relaxed
        it ahead (``prefetch_relaxations``), else one ASE optimiser run on the model's calculator. A model
        error raises, as any calculator call does."""
        done = self._relaxed.pop(relax_key(self._prepare(atoms), settings), None) if self._relaxed else None
        if done is not None:
            self.evaluations["relaxed_in_lockstep"] += 1
            return done
        (alone,) = relax_together(self, [atoms], settings.optimizer, settings.fmax, settings.max_steps,
                                  batched=False, relax_cell=settings.relax_cell)
        return alone

    def _apply_charge_spin(self, atoms: Atoms) -> None:
        charge = int(atoms.info.get("charge", 0))
        multiplicity = int(atoms.info.get("spin", 1))
        routes = self.variant.card.charge_spin
        if routes is None:
            if charge != 0 or multiplicity != 1:
                self.notes.add(CHARGE_SPIN_IGNORED)
            return
        spin = multiplicity if routes.get("spin_convention", "multiplicity") == "multiplicity" else multiplicity - 1
        self.base_calc.set(**{routes["charge"]: charge, routes["spin"]: spin})


def relax_key(atoms: Atoms, settings: RelaxSettings) -> bytes:
    """``structure_key`` plus what else decides a relaxation: its settings and the structure's constraints."""
    constraints = repr([constraint.todict() for constraint in atoms.constraints]).encode()
    return structure_key(atoms) + hashlib.blake2b(repr(settings).encode() + constraints, digest_size=8).digest()


def checked_answer(answer: tuple, n_atoms: int, stress: bool) -> tuple:
    """A batched evaluator's (energy, forces[, stress]) for one structure, checked (stress as Voigt)."""
    checked = (checked_energy(answer[0]), checked_forces(answer[1], n_atoms))
    return (*checked, voigt_stress(checked_stress(answer[2]))) if stress else checked


def voigt_stress(stress: np.ndarray) -> np.ndarray:
    """ASE's Voigt 6-vector (xx, yy, zz, yz, xz, xy) of a stress given as that or as a 3x3 tensor."""
    from ase.stress import full_3x3_to_voigt_6_stress

    return full_3x3_to_voigt_6_stress(stress) if stress.shape == (3, 3) else stress


def structure_key(atoms: Atoms) -> bytes:
    """A digest of everything a model sees of a structure: the same structure gives the same key, bit for bit."""
    digest = hashlib.blake2b(digest_size=20)
    for array in (atoms.numbers.astype(np.int64), atoms.positions.astype(np.float64),
                  atoms.cell.array.astype(np.float64), atoms.pbc.astype(np.bool_)):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(repr((atoms.info.get("charge", 0), atoms.info.get("spin", 1))).encode())
    return digest.digest()
