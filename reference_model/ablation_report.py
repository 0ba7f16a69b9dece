"""Write ABLATION.md (to stdout) from an ablation folder: each run's metrics.json and its S22 results.

``python -m omni_bench_reference.ablation_report runs/ablation > reference_model/ABLATION.md`` (called by
``reference_model/ablation.sh``).  Every number comes from those files; runs are ``RUNS/<variant>-<seed>``.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

from omni_bench.data import sha256_file
from omni_bench.reporting.text import markdown_table

VARIANTS = {
    "plain": "plain multi-task",
    "selreg": "+ selective regularisation",
    "dbs": "+ domain-bridging set",
    "both": "+ both (the full recipe)",
}
SHIPPED = Path(__file__).resolve().parent / "omni.pth"
#: (label, getter over a run's metrics and S22 results, format)
DOMAIN_B = [
    ("interaction energy MAE (kcal/mol)", lambda m, s: m["domain_b"].get("interaction_energy_mae_kcal_per_mol"), ".2f"),
    ("energy MAE (meV/atom)", lambda m, s: m["domain_b"].get("energy_mae_meV_per_atom"), ".1f"),
    ("force MAE (meV/A)", lambda m, s: m["domain_b"].get("force_mae_meV_per_A"), ".0f"),
]
S22 = [
    ("PBE0 against CCSD(T)", lambda m, s: s.get("PBE0"), ".2f"),
    ("PBE0+D3(BJ) against CCSD(T)", lambda m, s: s.get("PBE0+d3"), ".2f"),
    ("PBE0 against PBE0/def2-SVP (model against model)", lambda m, s: s.get("PBE0 vs pbe0-def2svp"), ".2f"),
]
#: the reference rows: the level the PBE0 channel learns, computed, and the starting model
REFERENCE_MODELS = ["pbe0-def2svp", "pbe0-def2svp+d3", "7net-mf-0@PBE", "7net-mf-0@PBE+d3"]
VALIDATION = [(f"{channel} {quantity}", (lambda c, q: lambda m, s: m["final_validation"].get(f"val_{q}_{c}"))(
    channel, key), fmt) for channel in ("PBE0", "GFN2", "PBE", "R2SCAN")
    for quantity, key, fmt in (("E", "energy_mae_meV_per_atom", ".1f"), ("F", "force_mae_meV_per_A", ".0f"))]
TRAINING = [
    ("epochs (best)", lambda m, s: m["best_epoch"], ".1f"),
    ("epochs run", lambda m, s: m["epochs"], ".1f"),
    ("training wall-min (1 thread; two runs shared the 2 cores)", lambda m, s: m["wall_s_training"] / 60, ".1f"),
]


def _predicted(path: Path) -> dict[str, float]:
    with path.open() as handle:
        return {row["id"]: float(row["predicted"]) for row in csv.DictReader(handle) if row["status"] == "ok"}


def _s22(results: Path, model: str) -> dict[str, float]:
    """S22 MAE by channel (``PBE0``, ``PBE0+d3``) from the results folder, when the run was scored; and the
    PBE0 channel's MAE against PBE0/def2-SVP's own interaction energies, when that reference row was run."""
    out = {}
    for channel in ("PBE0", "PBE0+d3"):
        path = results / f"{model}@{channel}" / "s22.json"
        if path.is_file():
            out[channel] = json.loads(path.read_text())["metrics"]["mae"]["value"]
    ours, theirs = results / f"{model}@PBE0" / "s22.predictions.csv", results / "pbe0-def2svp" / "s22.predictions.csv"
    if ours.is_file() and theirs.is_file():
        model_values, reference_values = _predicted(ours), _predicted(theirs)
        shared = sorted(set(model_values) & set(reference_values))
        out["PBE0 vs pbe0-def2svp"] = float(np.mean([abs(model_values[k] - reference_values[k]) for k in shared]))
    return out


def _reference_rows(results: Path) -> list[list[str]]:
    rows = []
    for model in REFERENCE_MODELS:
        path = results / model / "s22.json"
        if path.is_file():
            mae = json.loads(path.read_text())["metrics"]["mae"]
            rows.append([model, f"{mae['value']:.2f}", str(mae["n"])])
    return rows


def collect_probes(runs: Path) -> dict[str, tuple[dict, dict]]:
    """(metrics, S22 MAE by channel) of the runs beyond the ablation (``RUNS/uncapped-*``), by folder name."""
    return {path.parent.name: (json.loads(path.read_text()), _s22(runs / "results", f"omni-{path.parent.name}"))
            for path in sorted(runs.glob("uncapped-*/metrics.json"))}


def shipped_run(runs: Path, shipped: Path = SHIPPED) -> str | None:
    """The run folder whose checkpoint is the shipped ``omni.pth`` (by sha256), if any."""
    if not shipped.is_file():
        return None
    sha = sha256_file(shipped)
    return next((path.parent.name for path in sorted(runs.glob("*/metrics.json"))
                 if json.loads(path.read_text())["checkpoint"]["sha256"] == sha), None)


def probe_table(probes: dict[str, tuple[dict, dict]]) -> str:
    columns = [("lambda", lambda m, s: m["regularisation_lambda"], "g"), *TRAINING[:2],
               *DOMAIN_B, *S22, *VALIDATION[:2], VALIDATION[4]]
    rows = [[name, *[_cell(get(m, s), fmt) for _, get, fmt in columns]] for name, (m, s) in probes.items()]
    return markdown_table(["run", *[label for label, _, _ in columns]], rows)


def collect(runs: Path) -> dict[str, list[tuple[dict, dict]]]:
    """Per variant, (metrics, S22 MAE by channel) of every finished seed."""
    out: dict[str, list[tuple[dict, dict]]] = {}
    for variant in VARIANTS:
        for path in sorted(runs.glob(f"{variant}-*/metrics.json")):
            metrics = json.loads(path.read_text())
            out.setdefault(variant, []).append((metrics, _s22(runs / "results", f"omni-{path.parent.name}")))
    return out


def _cell(value, fmt: str) -> str:
    return "-" if value is None else f"{value:{fmt}}"


def _mean_std(values: list, fmt: str) -> str:
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return "-"
    if len(finite) == 1:
        return f"{finite[0]:{fmt}}"
    return f"{np.mean(finite):{fmt}} ± {np.std(finite, ddof=1):{fmt}}"


def _table(runs: dict[str, list[tuple[dict, dict]]], rows: list) -> str:
    header = ["", *[f"{variant} (n={len(runs[variant])})" for variant in runs]]
    body = [[label, *[_mean_std([get(m, s) for m, s in runs[v]], fmt) for v in runs]] for label, get, fmt in rows]
    return markdown_table(header, body)


def verdict(runs: dict[str, list[tuple[dict, dict]]]) -> list[str]:
    """Each recipe part's effect on the domain-B metrics against plain, and whether it exceeds twice the
    larger of the two seed standard deviations."""
    if len(runs.get("plain", [])) < 2:
        return ["Too few seeds of the plain variant for a verdict."]
    header = ["variant", *[label for label, _, _ in DOMAIN_B]]
    rows = []
    for variant in ("selreg", "dbs", "both"):
        if len(runs.get(variant, [])) < 2:
            continue
        cells = []
        for _, get, fmt in DOMAIN_B:
            ours = [get(m, s) for m, s in runs[variant]]
            plain = [get(m, s) for m, s in runs["plain"]]
            difference = float(np.mean(ours) - np.mean(plain))
            spread = max(np.std(ours, ddof=1), np.std(plain, ddof=1))
            size = "larger" if abs(difference) > 2 * spread else "not larger"
            cells.append(f"{difference:+{fmt}} ({size} than 2 × {spread:{fmt}})")
        rows.append([VARIANTS[variant], *cells])
    return ["Change against plain, mean over seeds (negative: better), and whether it is larger than twice the "
            "larger seed standard deviation of the two variants:", "", markdown_table(header, rows)]


def run_table(runs: dict[str, list[tuple[dict, dict]]]) -> str:
    """Every run on its own line (the shipped omni is one of them)."""
    columns = [*DOMAIN_B, *S22, *TRAINING[:2]]
    rows = [[m["name"] + f" (seed {m['recipe']['seed']})", *[_cell(get(m, s), fmt) for _, get, fmt in columns]]
            for variant_runs in runs.values() for m, s in variant_runs]
    return markdown_table(["run", *[label for label, _, _ in columns]], rows)


def _probe_section(runs_dir: Path) -> list[str]:
    probes = collect_probes(runs_dir)
    if not probes:
        return []
    return [
        "## Beyond the ablation: the penalty's strength, trained to convergence", "",
        "The full recipe's settings with other selective-penalty strengths (lambda 0 is the `dbs` variant; "
        "lambda 1e-3 is `both` above), one seed, each trained until early stopping or the config's own epoch cap "
        "instead of the ablation's cap. "
        "Columns as above; the last three are the validation errors (PBE0 energy and force, and the PBE replay "
        "energy: how far the old channel moved).", "",
        probe_table(probes), "",
    ]


def report(runs_dir: Path) -> str:
    runs = collect(runs_dir)
    shipped = shipped_run(runs_dir)
    first = next(iter(runs.values()))[0][0]
    recipe = first["recipe"]
    lam = max(m["regularisation_lambda"] for r in runs.values() for m, _ in r)
    fraction = max(m["dbs"]["dbs_fraction"] for r in runs.values() for m, _ in r)
    return "\n".join([
        "# Ablation of the reference model's training recipe", "",
        "A miniature of the SevenNet-Omni paper's cross-domain experiment (its Fig. 1c). Domain A is single "
        "molecules labelled at PBE0/def2-SVP and GFN2-xTB; domain B is molecular dimers, labelled at GFN2-xTB "
        "only, except for the domain-bridging set (DBS) of dimers labelled at both levels. Held-out domain-B "
        "dimers with PBE0 labels (never trained on) measure how well the PBE0 channel transfers into domain B. "
        "The four variants train on the same data with the same settings and differ only in the selective "
        "regularisation and in mixing the DBS in (without it, the DBS dimers keep their GFN2 label only). "
        "Regenerate everything here with `reference_model/ablation.sh`.", "",
        f"Settings shared by every run: at most {recipe['epochs']} epochs, early stopping after "
        f"{recipe['patience']} epochs without a validation loss lower by {recipe['min_delta']:g}; the figures "
        f"are the best epoch's. Batch {recipe['batch_size']}, learning rate {recipe['learning_rate']:g} "
        f"decaying {recipe['lr_decay_per_epoch']:g} per epoch, lambda {lam:g} (selreg, both), DBS fraction "
        f"{fraction:g} (dbs, both). "
        f"Hardware: {first['hardware']}. Each cell is the mean ± sample standard deviation over the "
        "seeds (the seed sets the validation split and the batch order).", "",
        "## Transfer into domain B (the PBE0 channel on held-out dimers, against their PBE0/def2-SVP labels)", "",
        f"{first['domain_b'].get('dimers', 0)} dimers; interaction energies E(dimer) - E(A) - E(B) at the dimer "
        f"geometry for {first['domain_b'].get('interaction_dimers', 0)} of them.", "",
        _table(runs, DOMAIN_B), "",
        "## Verdict", "",
        *verdict(runs), "",
        "## S22 (the PBE0 channel)", "",
        "Interaction-energy MAE in kcal/mol. S22's reference is CCSD(T)/CBS, another level than the PBE0 channel "
        "learns; the last row scores the channel against PBE0/def2-SVP's own interaction energies (PySCF, the "
        "card `pbe0-def2svp`), which is what the channel can at best reproduce.", "",
        _table(runs, S22), "",
        "Reference rows (interaction-energy MAE against CCSD(T), kcal/mol):", "",
        markdown_table(["model", "S22 MAE", "n"], _reference_rows(runs_dir / "results")), "",
        "## Validation (best epoch; energy MAE meV/atom, force MAE meV/A)", "",
        "Held-out 10 % of the training structures of each channel. PBE and R2SCAN frames are the replay of "
        "7net-mf-0's own predictions, so their error measures how far training moved the old channels.", "",
        _table(runs, VALIDATION), "",
        "## Training", "",
        _table(runs, TRAINING), "",
        "## Every run", "",
        "Domain-B and S22 figures as above, one run per line.", "",
        run_table(runs), "",
        *_probe_section(runs_dir),
        f"The shipped `omni` (reference_model/omni.pth) is the run `{shipped}` (same checkpoint sha256)."
        if shipped else "The shipped `omni` is none of these runs.", "",
    ])


if __name__ == "__main__":
    sys.stdout.write(report(Path(sys.argv[1])))
