"""The SevenNet-Omni recipe's mechanics: theta_T masks and the selective penalty, DBS mixing, channel
routing, checkpoint round trips, modal append, and a smoke training run through omni-bench's factory."""

from __future__ import annotations

import copy
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import atomic_numbers

from omni_bench_reference import channels as ch
from omni_bench_reference.recipe import RecipeConfig
from omni_bench_reference.sampling import DBSMixingSampler, partition, validation_ids

REPO = Path(__file__).resolve().parent.parent
NEW_CHANNELS = ("PBE0", "GFN2")
#: made-up per-element energies (eV) for the fixture labels: the append statistics only need numbers
FAKE_ELEMENT_ENERGY = {"PBE0": {"H": -13.6, "C": -1027.0, "N": -1480.0, "O": -2041.0},
                       "GFN2": {"H": -10.7, "C": -48.0, "N": -71.0, "O": -103.0}}


def _labelled(atoms: Atoms, channel: str, rng: np.random.Generator, structure_id: str, dbs: bool = False) -> Atoms:
    out = atoms.copy()
    energy = sum(FAKE_ELEMENT_ENERGY[channel][s] for s in out.get_chemical_symbols()) + rng.normal(0, 0.05)
    out.calc = SinglePointCalculator(out, energy=energy, forces=rng.normal(0, 0.3, (len(out), 3)))
    out.info.update(id=structure_id, channel=channel, dbs=dbs, pool="dbs" if dbs else channel.lower())
    return out


@pytest.fixture(scope="module")
def fixture_frames() -> dict[str, list[Atoms]]:
    rng = np.random.default_rng(0)
    names = ["H2O", "CH4", "NH3", "CH3OH", "C2H6", "HCOOH", "CH3CHO", "CH3CH2OH", "CH3NO2", "HCN"]
    frames: dict[str, list[Atoms]] = {c: [] for c in NEW_CHANNELS}
    for k, name in enumerate(names):
        atoms = molecule(name)
        atoms.rattle(0.05, seed=k)
        for channel in NEW_CHANNELS:
            frames[channel].append(_labelled(atoms, channel, rng, f"{name}-{k}"))
    return frames


@pytest.fixture(scope="module")
def appended(fixture_frames) -> tuple[dict, dict]:
    return ch.append_channels("7net-mf-0", fixture_frames)


@pytest.fixture(scope="module")
def pristine(appended) -> torch.nn.Module:
    config, state = appended
    return ch.build_model(copy.deepcopy(config), copy.deepcopy(state))


@pytest.fixture()
def model(pristine):
    """The appended model, restored after each test (deep copies of e3nn's compiled modules change their
    state-dict keys, so tests perturb this one in place instead)."""
    saved = {key: value.clone() for key, value in pristine.state_dict().items()}
    yield pristine
    pristine.load_state_dict(saved)
    pristine.zero_grad(set_to_none=True)


def _predict(model: torch.nn.Module, atoms: Atoms, channel: str) -> tuple[float, np.ndarray]:
    from sevenn.calculator import SevenNetCalculator

    work = atoms.copy()
    work.calc = SevenNetCalculator(model=model, modal=channel, device="cpu")
    return work.get_potential_energy(), work.get_forces()


def _probe() -> Atoms:
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.03, seed=3)
    return atoms


def _fill_task_rows(model: torch.nn.Module, channel: str, seed: int, scale: float = 0.3) -> None:
    generator = torch.Generator().manual_seed(seed)
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in ch.channel_rows(model, channel).items():
            parameters[name][mask] += scale * torch.randn(int(mask.sum()), generator=generator)


@pytest.mark.slow
def test_theta_t_mask_covers_exactly_the_one_hot_rows(model):
    linears = ch.modal_linears(model)
    assert set(linears) == {f"{i}_self_interaction_{j}.linear.weight" for i in range(5) for j in (1, 2)} | {
        "reduce_input_to_hidden.linear.weight"}
    per_channel = sum(mul for module in linears.values() for mul, ir in module.linear.irreps_out if str(ir) == "0e")
    masks = ch.task_specific_mask(model)
    assert sum(int(m.sum()) for m in masks.values()) == 4 * per_channel == 4 * 1728
    # rows of different channels never overlap, and together they make the whole mask
    rows = [ch.channel_rows(model, c) for c in model.modal_map]
    for name, mask in masks.items():
        stacked = torch.stack([r[name] for r in rows]).int()
        assert int(stacked.sum(0).max()) == 1 and torch.equal(stacked.sum(0).bool(), mask)


@pytest.mark.slow
def test_penalty_gradient_is_zero_on_theta_c_and_nonzero_on_theta_t(model):
    for channel in model.modal_map:  # new channels start at zero: give every theta_T entry a value first
        _fill_task_rows(model, channel, seed=len(channel))
    masks = ch.task_specific_mask(model)
    model.zero_grad()
    (0.5 * ch.selective_penalty(model, masks)).backward()
    for name, parameter in model.named_parameters():
        grad = parameter.grad if parameter.grad is not None else torch.zeros_like(parameter)
        if name in masks:
            assert torch.all(grad[~masks[name]] == 0), name
            assert torch.all(grad[masks[name]] != 0), name
            torch.testing.assert_close(grad[masks[name]], parameter.detach()[masks[name]])  # d(0.5 w^2)/dw = w
        else:
            assert torch.all(grad == 0), name


@pytest.mark.slow
def test_penalty_can_spare_channels(model):
    _fill_task_rows(model, "PBE0", seed=1)
    _fill_task_rows(model, "GFN2", seed=2)
    masks = ch.task_specific_mask(model, ["PBE0"])
    model.zero_grad()
    ch.selective_penalty(model, masks).backward()
    parameters = dict(model.named_parameters())
    for name, rows in ch.channel_rows(model, "GFN2").items():
        assert torch.all(parameters[name].grad[rows] == 0)


@pytest.mark.slow
def test_a_channel_routes_to_its_own_rows(model):
    atoms = _probe()
    before = {c: _predict(model, atoms, c) for c in model.modal_map}
    saved = {key: value.clone() for key, value in model.state_dict().items()}
    for target in NEW_CHANNELS + ("PBE",):
        model.load_state_dict(saved)
        _fill_task_rows(model, target, seed=7)
        after = {c: _predict(model, atoms, c) for c in model.modal_map}
        for channel in model.modal_map:
            energy_shift = abs(after[channel][0] - before[channel][0])
            if channel == target:
                assert energy_shift > 1e-3 and not np.array_equal(after[channel][1], before[channel][1])
            else:
                # equal up to float32 summation order (thread scheduling), far below the target's change
                assert after[channel][0] == pytest.approx(before[channel][0], abs=1e-6), (target, channel)
                np.testing.assert_allclose(after[channel][1], before[channel][1], rtol=0, atol=1e-5)
    # a shared weight (theta_C) moves every channel
    model.load_state_dict(saved)
    name, mask = next(iter(ch.task_specific_mask(model).items()))
    with torch.no_grad():
        dict(model.named_parameters())[name][~mask] *= 1.1
    for channel in model.modal_map:
        assert abs(_predict(model, atoms, channel)[0] - before[channel][0]) > 1e-4


@pytest.mark.slow
def test_appended_model_predicts_old_channels_like_7net_mf_0(model):
    from sevenn.calculator import SevenNetCalculator

    crystal = bulk("MgO", "rocksalt", a=4.25, cubic=True)
    crystal.rattle(0.05, seed=1)
    for channel in ("PBE", "R2SCAN"):
        calculator = SevenNetCalculator("7net-mf-0", modal=channel, device="cpu")
        for atoms in (_probe(), crystal):
            base = atoms.copy()
            base.calc = calculator
            energy, forces = _predict(model, atoms, channel)
            np.testing.assert_allclose(energy, base.get_potential_energy(), rtol=1e-6, atol=1e-5)
            np.testing.assert_allclose(forces, base.get_forces(), atol=1e-5)
    for channel in NEW_CHANNELS:  # modal append starts the new rows at zero
        parameters = dict(model.named_parameters())
        assert all(torch.all(parameters[n][m] == 0) for n, m in ch.channel_rows(model, channel).items())


@pytest.mark.slow
def test_new_channels_shift_by_least_squares_element_energies(model):
    shift = model.rescale_atomic_energy.shift.detach()
    for channel in NEW_CHANNELS:
        row = shift[model.modal_map[channel]]
        for symbol, energy in FAKE_ELEMENT_ENERGY[channel].items():  # labels: these plus 0.05 eV noise
            assert float(row[model.type_map[atomic_numbers[symbol]]]) == pytest.approx(energy, abs=0.2)
        assert float(row[model.type_map[atomic_numbers["Cl"]]]) == 0.0  # no Cl in this channel's frames


@pytest.mark.slow
def test_a_warm_started_channel_predicts_its_source_shifted_per_element(model, appended, fixture_frames):
    """After warm_start from PBE, each new channel's rows equal PBE's, its energy differs from PBE's by the
    least-squares per-element fit of (label - PBE prediction), its forces are PBE's, and the penalty anchored
    at the start is zero with no gradient outside theta_T."""
    import sevenn._keys as KEY

    config = copy.deepcopy(appended[0])
    source = {c: [_predict(model, a, "PBE")[0] for a in frames] for c, frames in fixture_frames.items()}
    ch.warm_start(model, config, "PBE", fixture_frames, source)
    parameters = dict(model.named_parameters())
    pbe_rows = ch.channel_rows(model, "PBE")
    probe = _probe()
    pbe_energy, pbe_forces = _predict(model, probe, "PBE")
    for channel, frames in fixture_frames.items():
        for name, mask in ch.channel_rows(model, channel).items():
            assert torch.equal(parameters[name][mask], parameters[name][pbe_rows[name]])
        residual = []
        for atoms, pbe in zip(frames, source[channel], strict=True):
            copy_ = atoms.copy()
            copy_.calc = SinglePointCalculator(copy_, energy=atoms.get_potential_energy() - pbe)
            residual.append(copy_)
        fit = ch.element_reference_energies(residual)
        energy, forces = _predict(model, probe, channel)
        # the shift is float32: a few thousand eV hold about 1e-3 eV
        assert energy - pbe_energy == pytest.approx(sum(fit[z] for z in probe.numbers), abs=1e-3)
        np.testing.assert_allclose(forces, pbe_forces, atol=1e-5)
        assert config[KEY.SHIFT][channel][6] == pytest.approx(
            float(model.rescale_atomic_energy.shift[model.modal_map[channel], model.type_map[6]]))
    masks = ch.task_specific_mask(model, list(NEW_CHANNELS))
    anchor = {n: parameters[n][m].detach().clone() for n, m in masks.items()}
    penalty = ch.selective_penalty(model, masks, anchor)
    assert float(penalty) == 0.0
    _fill_task_rows(model, NEW_CHANNELS[0], seed=5)
    ch.selective_penalty(model, masks, anchor).backward()
    for name, parameter in model.named_parameters():
        if parameter.grad is not None and name in masks:
            assert not parameter.grad[~masks[name]].any()


@pytest.mark.slow
def test_checkpoint_round_trips_with_identical_predictions(model, appended, tmp_path):
    from sevenn.calculator import SevenNetCalculator

    for channel in NEW_CHANNELS:
        _fill_task_rows(model, channel, seed=11)
    path = tmp_path / "checkpoint.pth"
    torch.save(ch.shipped_checkpoint(appended[0], model, epoch=3, recipe={"name": "test"}), path)
    assert path.stat().st_size < 25e6
    raw = torch.load(path, weights_only=True)
    assert "optimizer_state_dict" not in raw and raw["epoch"] == 3
    atoms = _probe()
    reloaded = ch.load_model(path)  # sevenn's own loader, as SevenNetCalculator(model=path) uses it
    for channel in model.modal_map:
        energy, forces = _predict(model, atoms, channel)
        np.testing.assert_allclose(_predict(reloaded, atoms, channel)[0], energy, rtol=1e-7, atol=1e-6)
        np.testing.assert_allclose(_predict(reloaded, atoms, channel)[1], forces, rtol=1e-6, atol=1e-6)
    from_path = atoms.copy()
    from_path.calc = SevenNetCalculator(model=str(path), modal="PBE0", device="cpu")
    np.testing.assert_allclose(from_path.get_potential_energy(), _predict(model, atoms, "PBE0")[0], rtol=1e-7)


@pytest.mark.slow
def test_loss_vanishes_on_own_predictions_and_stress_counts_for_crystals_only(model):
    from omni_bench_reference.recipe import GPA_PER_EV_A3, batch_loss, collate, to_graph

    crystal = bulk("MgO", "rocksalt", a=4.25)
    crystal.rattle(0.03, seed=2)
    frames = []
    for atoms, channel in ((crystal, "PBE"), (_probe(), "PBE0")):
        from sevenn.calculator import SevenNetCalculator

        work = atoms.copy()
        work.calc = SevenNetCalculator(model=model, modal=channel, device="cpu")
        results = {"energy": work.get_potential_energy(), "forces": work.get_forces()}
        if atoms.pbc.all():
            results["stress"] = work.get_stress()
        labelled = atoms.copy()
        labelled.calc = SinglePointCalculator(labelled, **results)
        labelled.info["channel"] = channel
        frames.append(labelled)
    model.set_is_batch_data(True)
    config = RecipeConfig(name="t", training_set="unused", stress_weight=0.5, huber_delta=0.01,
                          channel_weights={"PBE": 2.0, "PBE0": 1.0})

    def loss(crystal_stress_offset: float) -> float:
        shifted = frames[0].copy()
        shifted.calc = SinglePointCalculator(shifted, energy=frames[0].get_potential_energy(),
                                             forces=frames[0].get_forces(),
                                             stress=frames[0].get_stress() + crystal_stress_offset)
        shifted.info["channel"] = "PBE"
        graphs = [to_graph(a, 5.0) for a in (shifted, frames[1])]
        return float(batch_loss(model(collate(graphs)), config))

    assert loss(0.0) < 1e-8  # labels in the model's own sign and Voigt conventions
    offset_gpa = 0.01 * GPA_PER_EV_A3
    expected = 0.5 * 2.0 * 6 * 0.01 * (offset_gpa - 0.005) / (6 * 2)  # weight * w_PBE * Huber / (6 * frames)
    assert loss(0.01) == pytest.approx(expected, rel=1e-3)


def test_dbs_fraction_in_sampled_batches_matches_the_setting():
    main, dbs = list(range(1000)), list(range(1000, 1030))
    for batch_size, fraction in ((16, 0.125), (10, 0.3), (8, 0.25)):
        sampler = DBSMixingSampler(main, dbs, batch_size, fraction, seed=5)
        total = drawn = 0
        for epoch in range(1, 21):
            batches = sampler.batches(epoch)
            assert sorted(i for b in batches for i in b if i < 1000) == main  # every frame once per epoch
            for batch in batches[:-1]:
                assert len(batch) == batch_size and sum(i >= 1000 for b in [batch] for i in b) == round(
                    fraction * batch_size)
            total += sum(len(b) for b in batches)
            drawn += sum(i >= 1000 for b in batches for i in b)
        assert abs(drawn / total - fraction) < 0.01
    no_mixing = DBSMixingSampler(main, [], 8, 0.0, seed=5).batches(1)
    assert all(len(b) == 8 for b in no_mixing) and len(no_mixing) == 125
    with pytest.raises(ValueError):
        DBSMixingSampler(main, dbs, 4, 0.05, seed=5)  # rounds to no DBS frame at all


def test_variants_see_the_same_validation_and_keep_one_dbs_label_without_mixing():
    rng = np.random.default_rng(1)
    frames = []
    for k in range(40):
        atoms = molecule("CH4")
        frames.append(_labelled(atoms, "GFN2", rng, f"gfn2-{k}"))
    for k in range(10):
        atoms = molecule("H2O")
        frames += [_labelled(atoms, c, rng, f"dbs-{k}", dbs=True) for c in NEW_CHANNELS]
    held = validation_ids(frames, 0.1, seed=3)
    assert held == validation_ids(frames, 0.1, seed=3) and held != validation_ids(frames, 0.1, seed=4)
    for channel, n_ids in (("GFN2", 50), ("PBE0", 10)):  # 10 % of each channel's structures, shared ones once
        assert len({a.info["id"] for a in frames if a.info["channel"] == channel} & held) == round(0.1 * n_ids)
    mixed = partition(frames, held, mix_dbs=True, keep_channel="PBE0")
    plain = partition(frames, held, mix_dbs=False, keep_channel="PBE0")
    assert [a.info["id"] for a in mixed.validation] == [a.info["id"] for a in plain.validation]
    assert not {a.info["id"] for a in mixed.main + mixed.dbs} & held
    assert all(a.info["dbs"] for a in mixed.dbs) and len(mixed.dbs) == 2 * len({a.info["id"] for a in mixed.dbs})
    plain_dbs = [a for a in plain.main if a.info["dbs"]]
    assert plain.dbs == [] and {a.info["channel"] for a in plain_dbs} == {"PBE0"}
    assert len(plain_dbs) == len(mixed.dbs) // 2


def test_configs_differ_only_where_the_ablation_says():
    configs = {name: RecipeConfig.from_yaml(REPO / "reference_model" / "configs" / f"{name}.yaml").as_dict()
               for name in ("plain", "selreg", "dbs", "both")}
    varied = {"name", "regularisation", "dbs_fraction"}
    for name in ("selreg", "dbs", "both"):
        config = configs[name]
        assert {k: v for k, v in config.items() if k not in varied} == \
            {k: v for k, v in configs["plain"].items() if k not in varied}, name
    assert configs["plain"]["regularisation"] == configs["dbs"]["regularisation"] == 0
    assert configs["plain"]["dbs_fraction"] == configs["selreg"]["dbs_fraction"] == 0
    assert configs["selreg"]["regularisation"] == configs["both"]["regularisation"] > 0
    assert configs["dbs"]["dbs_fraction"] == configs["both"]["dbs_fraction"] > 0


def test_card_provenance_names_a_penalty_strength_other_than_the_configs():
    from omni_bench_reference.card import _train_command

    recipe = RecipeConfig.from_yaml(REPO / "reference_model" / "configs" / "both.yaml").as_dict()
    base = "python -m omni_bench_reference.train --config reference_model/configs/both.yaml --seed 20261121 --epochs 40"
    assert _train_command(recipe) == base
    assert _train_command({**recipe, "regularisation": 1e-5}) == base + " --regularisation 1e-05"


def test_a_number_yaml_reads_as_text_is_one_clear_line_and_exit_2(tmp_path, capsys):
    from omni_bench_reference.train import main

    text = (REPO / "reference_model" / "configs" / "both.yaml").read_text()
    config = tmp_path / "lambda.yaml"
    config.write_text(text.replace("regularisation: 1.0e-3", "regularisation: 1e-4"))  # PyYAML: the text '1e-4'
    assert main(["--config", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(config) in err and "'regularisation'" in err and "1.0e-4" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_smoke_training_run_gives_a_model_omni_bench_can_run(tmp_path):
    from omni_bench.models.factories import sevennet
    from omni_bench_reference.train import train

    out = tmp_path / "smoke"
    config_path = REPO / "reference_model" / "configs" / "smoke.yaml"
    done = subprocess.run([sys.executable, "-m", "omni_bench_reference.train", "--config", str(config_path),
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and set(NEW_CHANNELS) <= set(metrics["modal_map"])
    assert metrics["dbs"]["frames_in_training"] > 0
    assert metrics["parameters"]["theta_T_regularised"] == 2 * 1728  # the PBE0 and GFN2 rows
    assert all(np.isfinite(v) for v in metrics["final_validation"].values())
    domain_b = metrics["domain_b"]  # the held-out test dimers: scored, never trained or validated on
    assert domain_b["channel"] == "PBE0" and domain_b["interaction_dimers"] >= 1
    assert np.isfinite(domain_b["interaction_energy_mae_kcal_per_mol"]) and np.isfinite(domain_b["force_mae_meV_per_A"])
    raw = torch.load(out / "checkpoint.pth", weights_only=True)
    assert raw["epoch"] == metrics["best_epoch"] and "optimizer_state_dict" not in raw
    assert metrics["stopped"] == "epochs"
    for channel in NEW_CHANNELS:
        atoms = molecule("CH3CH2OH")
        atoms.calc = sevennet(model=str(out / "checkpoint.pth"), modal=channel, device="cpu")
        assert np.isfinite(atoms.get_potential_energy())

    # resume: one more epoch on top of the two, optimizer state included; the first two epochs stay as logged
    config = RecipeConfig.from_yaml(config_path)
    logged = (out / "log.csv").read_text().strip().splitlines()
    resumed = train(RecipeConfig(**{**config.__dict__, "epochs": 3}), out, resume=True)
    history = list(csv.DictReader((out / "log.csv").open()))
    assert resumed["epochs"] == 3 and len(history) == 3
    best = min(history, key=lambda row: float(row["val_loss"]))
    assert resumed["best_epoch"] == int(best["epoch"])  # the shipped model is the best epoch's, not the last
    assert resumed["final_validation"]["val_energy_mae_meV_per_atom_PBE0"] == pytest.approx(
        float(best["val_energy_mae_meV_per_atom_PBE0"]), abs=1e-4)
    assert (out / "log.csv").read_text().strip().splitlines()[:3] == logged and len(logged) == 1 + 2
    with pytest.raises(ValueError, match="another recipe"):
        train(RecipeConfig(**{**config.__dict__, "regularisation": 0.5}), out, resume=True)

    # early stopping: no later epoch beats the first by the huge min_delta, so patience 1 stops before epoch 3
    stopping = train(RecipeConfig(**{**config.__dict__, "epochs": 5, "patience": 1, "min_delta": 1e9}),
                     tmp_path / "early")
    assert stopping["stopped"] == "early_stopping" and stopping["epochs"] == 2 and stopping["best_epoch"] == 1
    assert torch.load(tmp_path / "early" / "checkpoint.pth", weights_only=True)["epoch"] == 1
