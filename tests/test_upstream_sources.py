"""Tasks read their data from the upstream files (and small tables shipped beside the task files) and get
exactly the items they got from the derived copies the shared data root holds: same structures to the bit,
same table rows, same inputs hash; the X23 VASP table is rebuilt from OUTCARs; a wheel ships the tables."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.io import read
from helpers import REPO, edited_task, task_items

from omni_bench.data import task_tables
from omni_bench.errors import OmniBenchError
from omni_bench.identity import inputs_hash
from omni_bench.task_registry import all_tasks

sys.path.insert(0, str(REPO / "scripts"))
import x23_vasp_table  # noqa: E402

#: shipped table -> the derived copy in the shared data root it replaces
TABLES = {"mor41-reactions.csv": "MOR41/reactions.csv", "rost61-reactions.csv": "ROST61/reactions.csv",
          "x23-lattice-energies-dmc.csv": "X23_DMC/lattice_energies_dmc.csv",
          "x23-vasp-energies.csv": "X23_DFT_functionals/x23_vasp_energies.csv"}


def _body(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))


@pytest.mark.parametrize("table", TABLES)
def test_shipped_table_holds_the_derived_rows_under_a_provenance_header(table, data_root):
    text = (REPO / "tasks" / table).read_text()
    assert _body(text) == (data_root / TABLES[table]).read_text()
    header = text[: len(text) - len(_body(text))]
    assert "Source: github.com/" in header and "Paper:" in header
    using = [spec for spec in all_tasks().values() if table in {t.path for t in spec.tables}]
    assert using and all(spec.path.parent == REPO / "tasks" for spec in using)


def test_a_missing_or_edited_table_is_one_clear_error(tmp_path):
    moved = edited_task(tmp_path / "moved", "mor41", lambda raw: None)
    with pytest.raises(OmniBenchError, match="names mor41-reactions.csv, which is not beside the task file"):
        task_tables(moved)
    table = (REPO / "tasks" / "mor41-reactions.csv").read_text()
    (tmp_path / "moved" / "mor41-reactions.csv").write_text(table.replace("MOR41_01,-43.1,", "MOR41_01,-43.2,"))
    with pytest.raises(OmniBenchError, match="restore the table, or update its sha256"):
        task_tables(moved)


@pytest.mark.parametrize("task, derived", [("mor41", "MOR41/mor41_molecules.extxyz"),
                                           ("rost61", "ROST61/rost61_molecules.extxyz")])
def test_molecules_from_coord_files_are_bit_identical_to_the_derived_extxyz(task, derived, data_root):
    frames = read(data_root / derived, index=":")
    listed = [f.path.split("/")[-2] for f in all_tasks()[task].files if f.path.endswith("/coord")]
    assert listed == [a.info["name"] for a in frames]  # same order, so unused molecules come last as before
    molecules = {item.id: item.structures["molecule"] for item in task_items(task, data_root)}
    for frame in frames:
        atoms = molecules[frame.info["name"]]
        assert (atoms.numbers == frame.numbers).all() and (atoms.positions == frame.positions).all()
        assert not atoms.pbc.any() and not atoms.cell.any() and not atoms.constraints
        assert atoms.info["charge"] == frame.info["charge"] and atoms.info["spin"] == frame.info["spin_multiplicity"]


def test_mamun_structures_from_the_upstream_json_match_the_derived_extxyz(data_root):
    """The check the loader made while it read both files: geometry, fixed atoms and energy agree."""
    twins = {a.info["hash"]: a for a in read(data_root / "Mamun2019_CatBench_noble_subset"
                                             / "mamun_noble_subset_structures.extxyz", index=":")}
    items = task_items("mamun-noble", data_root)
    assert len(items) == len(twins) == 39
    for item in items:
        atoms, = item.structures.values()
        twin = twins[item.meta["hash"]]
        assert (atoms.numbers == twin.numbers).all() and np.allclose(atoms.positions, twin.positions, atol=1e-6)
        assert np.allclose(atoms.cell, twin.cell)
        fixed = [sorted(c.get_indices()) for c in atoms.constraints]
        assert fixed == [sorted(c.get_indices()) for c in twin.constraints]
        assert abs(atoms.info["ref_energy:BEEF-vdW"] - twin.info["REF_energy"]) < 1e-6


def test_inputs_hash_aliases_apply_to_the_task_files_as_they_are():
    """An alias whose 'current' no longer matches is dead: the task was edited after the move to upstream
    sources, so its results must not be taken as the old ones (raise the version, remove the alias)."""
    aliased = {name: spec for name, spec in all_tasks().items() if spec.inputs_hash_alias}
    assert set(aliased) == {"mor41", "rost61", "x23", "x23-r2scan", "mamun-noble", "mamun-noble-relaxed",
                            "elastic-moduli", "heat-capacity"}
    for spec in aliased.values():
        current, stored_as = spec.inputs_hash_alias
        assert inputs_hash(dataclasses.replace(spec, inputs_hash_alias=None)) == current, spec.name
        assert inputs_hash(spec) == stored_as
        edited = dataclasses.replace(spec, loader_params={**spec.loader_params, "extra": 1})
        assert inputs_hash(edited) not in (current, stored_as)


def _outcar(n_atoms: int, sigma0: str, toten: str, n_lines: int) -> str:
    """Text laid out like a VASP OUTCAR: NIONS, electronic steps converging to the energies, final summary."""
    steps = "".join(
        f"  free energy    TOTEN  =       {float(toten) + 10.0 ** -step:.8f} eV\n\n"
        f"  energy without entropy =      {float(sigma0) + 10.0 ** -step:.8f}  energy(sigma->0) =      "
        f"{float(sigma0) + 10.0 ** -step:.8f}\n\n" for step in range(1, n_lines))
    return (f"   number of dos      NEDOS =    301   number of ions     NIONS = {n_atoms:6d}\n{steps}"
            f"  FREE ENERGIE OF THE ION-ELECTRON SYSTEM (eV)\n  ---------------------------------------------------\n"
            f"  free  energy   TOTEN  =       {toten} eV\n\n"
            f"  energy  without entropy=      {sigma0}  energy(sigma->0) =      {sigma0}\n")


def test_x23_vasp_table_script_rebuilds_the_shipped_rows_from_outcars(tmp_path):
    shipped = (REPO / "tasks" / "x23-vasp-energies.csv").read_text()
    rows = [line for line in _body(shipped).splitlines(keepends=True)[1:] if line.startswith(("04_", "07_"))]
    for row in rows:
        system, phase, functional, n_atoms, sigma0, toten, n_lines = row.strip().split(",")
        outcar = tmp_path / "DFT-BENCHMARK" / phase / system / f"OUTCAR_{functional}"
        outcar.parent.mkdir(parents=True, exist_ok=True)
        outcar.write_text(_outcar(int(n_atoms), sigma0, toten, int(n_lines)))
    assert len(rows) == 2 * 2 * 17 and shipped.startswith(x23_vasp_table.HEADER)
    assert x23_vasp_table.table(tmp_path / "DFT-BENCHMARK") == x23_vasp_table.HEADER + "".join(rows)
    assert x23_vasp_table.main([str(tmp_path / "DFT-BENCHMARK"), "--check"]) == 1  # 2 of 23 systems differ
    (tmp_path / "DFT-BENCHMARK" / "gas" / "04_ammonia" / "OUTCAR_PBE").write_text("killed\n")
    with pytest.raises(SystemExit, match="OUTCAR_PBE: no NIONS"):
        x23_vasp_table.table(tmp_path / "DFT-BENCHMARK")


@pytest.mark.slow
def test_a_built_wheel_ships_the_tables_and_its_tasks_find_them(tmp_path):
    """A non-editable install: the wheel's builtin_tasks hold the tables, and an installed copy verifies them."""
    source = tmp_path / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", "build", "runs", "data")
    for name in ("pyproject.toml", "README.md", "omni_bench", "omni_bench_worker", "tasks", "reference_model"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(REPO / name, source / name, **({"ignore": ignore} if copy is shutil.copytree else {}))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True)
    wheel, = (tmp_path / "dist").glob("*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)], check=True,
                   capture_output=True)
    probe = ("import json, omni_bench; from omni_bench.data import task_tables; "
             "from omni_bench.task_registry import all_tasks; t = all_tasks(); "
             "print(json.dumps([omni_bench.__file__] + [str(p) for n in ('mor41', 'rost61', 'x23') "
             "for p in task_tables(t[n]).values()]))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                          env={"PYTHONPATH": str(tmp_path / "site"), "PATH": ""})
    assert done.returncode == 0, done.stderr
    module, *tables = json.loads(done.stdout)
    assert module.startswith(str(tmp_path / "site"))
    assert sorted(Path(p).name for p in tables) == sorted(TABLES)
    assert all(p.startswith(str(tmp_path / "site" / "omni_bench" / "builtin_tasks")) for p in tables)
