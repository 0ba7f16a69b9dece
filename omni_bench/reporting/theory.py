"""Levels of theory reduced to what decides comparability, and the warnings a results table carries.

Task files and model cards describe their level of theory in free text ("PBE/PBE+U (Materials Project)",
"DLPNO-CCSD(T)/CBS // PBEh-3c", "wB97M-V/def2-TZVPD (low spin)"). Two numbers are comparable when they come
from the same **functional family** and agree on **dispersion**; basis sets, codes, PAW settings and the
geometry level after ``//`` are left out. The rules apply to the method part of the text: before ``//`` (the
geometry level), ``;`` and the first ``, ``, without parenthesised asides, so "r2SCAN (no dispersion correction),
published with DMC-ICE13" is r2SCAN without dispersion. In order (first match wins):

==============================  ===============  ==========================================================
text contains                   family           dispersion included
==============================  ===============  ==========================================================
``none`` (at the start)         none             - (no reference, nothing compared)
CCSD(T) (DLPNO-, dCCSD(T) too)  CCSD(T)          yes: correlated wavefunction
DMC, Diffusion Monte Carlo      DMC              yes
GFN2                            GFN2-xTB         yes: its own D4
BEEF                            BEEF-vdW         yes: a vdW-DF non-local term
wB97X / wB97M (or ωB97)         wB97X/wB97M      when the functional carries -V (VV10), -D3 or -D4
PBE0, PBEh                      PBE0             when the functional carries -D3/+D3/-D4
r2SCAN                          r2SCAN           likewise
PBEsol, RPBE, SCAN, B3LYP       that functional  likewise
PBE (PBE+U too)                 PBE/PBE+U        likewise
MP2, EMT                        that method      MP2: yes; EMT: no
anything else                   unknown          never compared
==============================  ===============  ==========================================================

"Likewise" reads the dispersion tag from the first word only (``PBE+D3``, ``PBE-D3(BJ)``, ``wB97M-D3BJ/DZVP``),
so a note such as "no dispersion correction" later in the text is not mistaken for one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .load import TaskResult

#: (pattern on the lower-cased method part, family, dispersion built into the method itself)
_FAMILIES: list[tuple[str, str, bool]] = [
    (r"ccsd\(t\)", "CCSD(T)", True),
    (r"\bdmc\b|diffusion monte carlo", "DMC", True),
    (r"gfn2", "GFN2-xTB", True),
    (r"\bbeef", "BEEF-vdW", True),
    (r"(\bw|ω)b97", "wB97X/wB97M", False),
    (r"\bpbe0\b|\bpbeh\b", "PBE0", False),
    (r"r2scan", "r2SCAN", False),
    (r"\bpbesol\b", "PBEsol", False),
    (r"\brpbe\b", "RPBE", False),
    (r"\bscan\b", "SCAN", False),
    (r"\bb3lyp\b", "B3LYP", False),
    (r"\bpbe\b", "PBE/PBE+U", False),
    (r"\bmp2\b", "MP2", True),
    (r"\bemt\b", "EMT", False),
]
_DISPERSION_TAG = re.compile(r"d3|d4|-v(\b|/)|vv10|vdw")
CHARGE_SPIN_NOTE = "charge/spin not passed"


@dataclass(frozen=True)
class LevelOfTheory:
    """``family`` is None when the text names no method we know (then nothing is compared)."""

    text: str
    family: str | None
    dispersion: bool

    @property
    def known(self) -> bool:
        return self.family is not None


def level_of_theory(text: str | None) -> LevelOfTheory:
    """The family and dispersion of a free-text level of theory (rules in the module docstring)."""
    text = (text or "").strip()
    energy = method_part(text).lower()
    if not energy or re.match(r"none\b", energy):
        return LevelOfTheory(text, None, False)
    for pattern, family, built_in in _FAMILIES:
        if re.search(pattern, energy):
            first_word = energy.split()[0] if energy.split() else ""
            return LevelOfTheory(text, family, built_in or bool(_DISPERSION_TAG.search(first_word)))
    return LevelOfTheory(text, None, False)


def method_part(text: str) -> str:
    """The part of a level of theory that names the method (see the module docstring)."""
    part = text.split("//", 1)[0].split(";", 1)[0]
    part = re.sub(r"\s\([^()]*(\([^()]*\)[^()]*)*\)", "", part)  # asides, with one level of nesting
    return part.split(", ", 1)[0].strip()


@dataclass(frozen=True)
class ResultWarning:
    """One mark in a results table: ``kind`` for filtering and styling, ``short`` shown, ``detail`` on hover."""

    kind: str  # 'lot', 'dispersion', 'in-domain', 'charge-spin', 'failed'
    short: str
    detail: str


def card_of(result: TaskResult) -> dict:
    """The results JSON's ``card`` section; results written before it existed fall back to the fingerprint
    (its level of theory; trained-with-dispersion then unknown, read from the level of theory alone)."""
    card = result.record.get("card")
    if isinstance(card, dict):
        return card
    fp = result.record["model"].get("fingerprint") or {}
    return {"level_of_theory": fp.get("level_of_theory") or "", "trained_with_dispersion": None, "in_domain": []}


def warnings_for(result: TaskResult) -> list[ResultWarning]:
    """Level-of-theory and dispersion mismatches, in-domain results, charge/spin not passed, failed items."""
    card = card_of(result)
    model = level_of_theory(card.get("level_of_theory"))
    reference = level_of_theory(result.record["task"].get("level_of_theory"))
    trained_with_dispersion = bool(card.get("trained_with_dispersion")) or model.dispersion
    out: list[ResultWarning] = []
    if model.known and reference.known:
        if model.family != reference.family:
            out.append(ResultWarning("lot", f"LoT {model.family} vs {reference.family}",
                               f"model trained on {model.text}; reference: {method_part(reference.text)}"))
        elif (trained_with_dispersion or result.d3) != reference.dispersion:
            has = "includes" if reference.dispersion else "has no"
            out.append(ResultWarning("dispersion", "dispersion differs",
                               f"the reference ({reference.text}) {has} dispersion; the model "
                               f"{'includes it' if trained_with_dispersion or result.d3 else 'has none'}"))
    if result.d3 and trained_with_dispersion:
        out.append(ResultWarning("dispersion", "D3 counted twice",
                           f"+d3 added to a model trained with dispersion ({model.text or 'card says so'})"))
    if result.task in (card.get("in_domain") or []):
        out.append(ResultWarning("in-domain", "in-domain", f"{result.model} was trained on data of {result.task}"))
    notes = result.record.get("notes") or {}
    not_passed = sum(int(n) for note, n in notes.items() if note.startswith(CHARGE_SPIN_NOTE))
    if not_passed:
        out.append(ResultWarning("charge-spin", f"charge/spin not passed: {not_passed}",
                           f"{not_passed} charged or open-shell items; the model takes no charge/spin"))
    if result.n_failed:
        out.append(ResultWarning("failed", f"{result.n_failed} failed",
                           f"{result.n_failed} of {result.n_items} items failed (see the results file)"))
    return out
