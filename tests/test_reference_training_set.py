"""The reference model's committed training set: regenerable, correctly labelled, and disjoint from every task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from ase.io import read

from omni_bench.task_registry import all_tasks
from omni_bench_reference import card, labelling, overlap, training_set


@pytest.fixture(scope="module")
def frames():
    if not training_set.TRAINING_SET.is_file():
        pytest.fail(f"{training_set.TRAINING_SET} is missing: run python -m omni_bench_reference.training_set label, "
                    "then assemble")
    return read(training_set.TRAINING_SET, index=":", format="extxyz")


@pytest.fixture(scope="module")
def benchmark_structures_by_task(data_root: Path):
    by_task = card.benchmark_structures(data_root)
    assert set(by_task) == set(all_tasks())
    return by_task


@pytest.fixture(scope="module")
def benchmark_structures(benchmark_structures_by_task):
    return [atoms for structures in benchmark_structures_by_task.values() for atoms in structures]


@pytest.fixture(scope="module")
def benchmark_fingerprints(benchmark_structures):
    return overlap.collect(benchmark_structures)


@pytest.mark.slow
def test_the_tasks_sharing_a_training_structure_are_the_cards_in_domain_tasks(frames, benchmark_structures_by_task):
    """A task whose molecules or crystals the training set has is in-domain for omni: its card must say so,
    so that reports mark those results (and a task that no longer overlaps must not stay declared)."""
    card = yaml.safe_load((Path(training_set.__file__).parent / "model_card.yaml").read_text())
    sharing = overlap.tasks_sharing_structures(frames, benchmark_structures_by_task)
    assert sharing == card["in_domain"]


@pytest.mark.slow
def test_overlap_check_catches_a_perturbed_benchmark_molecule_and_a_strained_crystal(benchmark_structures,
                                                                                    benchmark_fingerprints):
    from ase.build import bulk

    rng = np.random.default_rng(0)
    s22_complex = next(a for a in benchmark_structures if not a.pbc.any() and a.get_chemical_formula() == "H4O2")
    water = s22_complex[:3].copy()
    water.positions += rng.normal(0, 0.03, water.positions.shape)
    assert any(line.startswith("molecule H2O") for line in overlap.overlaps([water], benchmark_fingerprints))
    copper = bulk("Cu", "fcc", a=3.7).repeat(2)  # a strained copper crystal: dcdft has Cu
    assert overlap.overlaps([copper], benchmark_fingerprints) == ["crystal Cu"]


def test_header_matches_the_frames(frames):
    header = yaml.safe_load(training_set.HEADER.read_text())
    assert header["frames"] == len(frames)
    assert header["missing_labels"] == []
    for name, count in header["counts"].items():
        assert count == sum(a.info["labeller"] == name for a in frames) > 0
    assert header["labellers"]["pbe0"]["settings"]["basis"] == "def2-SVP"
    by_id: dict[str, set[str]] = {}
    for atoms in frames:
        by_id.setdefault(atoms.info["id"], set()).add(atoms.info["channel"])
        assert np.isfinite(atoms.get_potential_energy())
        assert atoms.get_forces().shape == (len(atoms), 3)
    dbs_ids = {a.info["id"] for a in frames if a.info["dbs"]}
    assert len(dbs_ids) == header["dbs_structures"] > 0
    assert all(by_id[i] == {"PBE0", "GFN2"} for i in dbs_ids)
    assert {c for a in frames for c in [a.info["channel"]]} == {"PBE0", "GFN2", "PBE", "R2SCAN"}


def test_regenerated_geometries_equal_the_committed_ones(frames):
    regenerated = {a.info["id"]: a for pool in training_set.pools().values() for a in pool}
    for atoms in frames:
        again = regenerated[atoms.info["id"]]
        assert again.get_chemical_symbols() == atoms.get_chemical_symbols()
        np.testing.assert_allclose(again.positions, atoms.positions, atol=1e-6)


def test_labels_reproduce(frames):
    """Relabel the smallest frame of each quantum-chemistry channel and compare with the committed label."""
    for name in ("gfn2", "pbe0"):
        smallest = min((a for a in frames if a.info["labeller"] == name), key=len)
        energy, forces, _ = labelling.labellers()[name].compute(smallest)
        assert energy == pytest.approx(smallest.get_potential_energy(), abs=1e-5)
        np.testing.assert_allclose(forces, smallest.get_forces(), atol=1e-4)


def test_labelling_resumes_from_its_chunks(tmp_path, monkeypatch):
    small = {"gfn2": [a for a in training_set.pools()["gfn2"][:3]]}
    monkeypatch.setattr(training_set, "DATA_DIR", tmp_path)
    monkeypatch.setattr(training_set, "TRAINING_SET", tmp_path / "no-previous-set.extxyz")
    monkeypatch.setattr(training_set, "pools", lambda: small)
    monkeypatch.setattr(training_set, "CHUNK", 2)
    training_set.label(["gfn2"], max_chunks=1)
    first = sorted(tmp_path.rglob("*.extxyz"))
    assert len(first) == 1
    stamp = first[0].stat().st_mtime_ns
    training_set.label(["gfn2"], max_chunks=None)
    chunks = sorted(tmp_path.rglob("*.extxyz"))
    assert len(chunks) == 2 and chunks[0].stat().st_mtime_ns == stamp
    labelled = [a for path in chunks for a in read(path, index=":")]
    assert [a.info["id"] for a in labelled] == [a.info["id"] for a in small["gfn2"]]


def test_a_geometry_of_the_committed_set_keeps_its_label_without_a_new_calculation(frames, tmp_path, monkeypatch):
    """Changing the pools relabels only new geometries: the PBE0 labels of the unchanged ones are reused."""
    committed = [a for a in frames if a.info["labeller"] == "pbe0"][:2]
    pool = [a.copy() for a in committed]
    for atoms, source in zip(pool, committed, strict=True):
        atoms.info = {k: source.info[k] for k in ("id", "pool", "molecule", "charge", "spin")}
    monkeypatch.setattr(training_set, "DATA_DIR", tmp_path)
    monkeypatch.setattr(training_set, "pools", lambda: {"pbe0": pool})

    def no_calculation(atoms):
        raise AssertionError("a committed geometry was recomputed")

    original = labelling.labellers()["pbe0"]
    monkeypatch.setattr(training_set, "labellers",
                        lambda: {"pbe0": labelling.Labeller(original.name, original.channel, original.level_of_theory,
                                                            original.settings, no_calculation)})
    training_set.label(["pbe0"], max_chunks=None)
    labelled = [a for path in sorted(tmp_path.rglob("*.extxyz")) for a in read(path, index=":")]
    assert [a.info["id"] for a in labelled] == [a.info["id"] for a in committed]
    for new, old in zip(labelled, committed, strict=True):
        assert new.get_potential_energy() == pytest.approx(old.get_potential_energy(), abs=1e-8)
        np.testing.assert_allclose(new.get_forces(), old.get_forces(), atol=1e-8)


def test_domain_b_dimers_reach_pbe0_only_through_the_bridging_set_and_the_test_dimers_are_never_trained(frames):
    """The cross-domain design: every PBE0-labelled dimer is a DBS or a held-out test dimer, every test dimer
    has both fragments labelled, and no test geometry is a training geometry."""
    pbe0_dimers = {a.info["pool"] for a in frames if a.info["channel"] == "PBE0" and "+" in a.info["molecule"]}
    assert pbe0_dimers == {"dbs", "test_dimers"}
    test = [a for a in frames if a.info["pool"] in training_set.TEST_POOLS]
    assert {a.info["channel"] for a in test} == {"PBE0"}
    parents = [a.info["parent"] for a in frames if a.info["pool"] == "test_fragments"]
    dimer_ids = [a.info["id"] for a in frames if a.info["pool"] == "test_dimers"]
    assert sorted(parents) == sorted(2 * dimer_ids) and len(dimer_ids) >= 40
    trained = {training_set._geometry_key(a) for a in frames if a.info["pool"] not in training_set.TEST_POOLS}
    assert not {training_set._geometry_key(a) for a in test} & trained
