"""Files users pass in are data, not code: a model card or sweep file names only omni-bench's own factories
and the plug-ins', and a checkpoint a package would unpickle is read without running it, unless --trust-code."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from helpers import REPO, card_file, omni

from omni_bench.errors import OmniBenchError
from omni_bench.models import checkpoints, registry
from omni_bench.models.registry import resolve_models


def test_a_card_file_naming_a_foreign_factory_is_refused_and_runs_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = card_file(tmp_path, "evil", "os:system", args={"command": f"touch {tmp_path / 'PWNED'}"})
    code, _, err = omni(capsys, "run", "-m", str(evil), "-t", "s22", "--store", str(tmp_path / "s.db"),
                        "--out", str(tmp_path / "out"), "--no-progress")
    assert code == 2 and "factory 'os:system'" in err and "--trust-code" in err
    assert not (tmp_path / "PWNED").exists()


def test_a_sweep_file_naming_a_foreign_factory_is_refused(tmp_path, capsys):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"models:\n  - {{model: 'os:system', args: {{command: 'touch {tmp_path / 'PWNED'}'}}}}\n"
                     "tasks: [s22]\nexecutor: {name: serial}\n")
    code, _, err = omni(capsys, "sweep", str(sweep), "--store", str(tmp_path / "s.db"), "--no-progress")
    assert code == 2 and f"sweep file {sweep} names factory 'os:system'" in err
    assert not (tmp_path / "PWNED").exists()


def test_trust_code_runs_a_foreign_factory_with_a_warning_and_records_it(tmp_path, capsys):
    card = card_file(tmp_path, "ase-emt", "ase.calculators.emt:EMT")
    argv = ["run", "-m", str(card), "-t", "s22", "--limit", "2", "--store", str(tmp_path / "s.db"),
            "--out", str(tmp_path / "out"), "--no-progress"]
    assert omni(capsys, *argv)[0] == 2
    code, _, err = omni(capsys, *argv, "--trust-code")
    assert code == 0 and "warning: --trust-code" in err
    record = json.loads((tmp_path / "out" / "ase-emt" / "s22.json").read_text())
    assert record["config"]["trust_code"] == f"{card}: factory ase.calculators.emt:EMT"


def test_what_a_file_may_name_without_trust(tmp_path, monkeypatch):
    """omni-bench's own factories and the plug-ins' are allowed; a command-line factory needs no trust."""
    own = card_file(tmp_path, "own", "omni_bench.models.factories:emt")
    assert resolve_models([str(own)])[0].trusted_code is None
    assert resolve_models(["ase.calculators.emt:EMT"])[0].trusted_code is None  # the user typed it

    class EntryPoint:
        name, value = "demo", "demo_plugin.models:make"
    monkeypatch.setattr(registry, "entry_points", lambda group: [EntryPoint()])
    assert registry.allowed_factory("demo_plugin.models:make") and not registry.allowed_factory("demo_plugin:other")


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickled_checkpoint_that_runs_code_is_refused_before_sevenn_sees_it(tmp_path, capsys):
    import torch

    evil = tmp_path / "evil.pth"
    torch.save({"config": _RunsCode(tmp_path / "PWNED")}, evil)
    code, _, err = omni(capsys, "run", "-m", "7net-0", "--model-arg", f"model={evil}", "-t", "s22", "--limit", "1",
                        "--store", str(tmp_path / "s.db"), "--out", str(tmp_path / "out"), "--no-progress")
    assert code == 2 and "factories:sevennet would load" in err and "posix.system" in err and "--trust-code" in err
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "out").exists()


def test_plain_pickles_are_refused_and_trust_code_lets_a_file_through_on_record(tmp_path):
    import pickle

    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"weights": [1.0]}))
    (variant,) = resolve_models(["7net-0"], model_args=[f"model={plain}"])
    with pytest.raises(OmniBenchError, match="not a zip-based torch checkpoint"):
        checkpoints.check_model_files(variant)
    (trusting,) = resolve_models(["7net-0"], model_args=[f"model={plain}"], trust_code=True)
    note = checkpoints.check_model_files(trusting)  # nothing is loaded here
    assert note.startswith(f"checkpoint {plain}: not a zip-based torch checkpoint")


def test_bundled_checkpoints_pass_the_check_and_copies_of_them_too(tmp_path):
    (variant,) = resolve_models(["7net-0"])
    bundled = variant.card.resolve_checkpoint()
    assert variant.card.user_checkpoints() == []  # only a pkg: entry, shipped inside sevenn
    assert checkpoints.unsafe_globals(bundled) == []  # numpy arrays in sevenn's config are allowed
    copy = tmp_path / "copy.pth"
    shutil.copy(bundled, copy)
    (user,) = resolve_models(["7net-0"], model_args=[f"model={copy}"])
    assert checkpoints.check_model_files(user) is None
    assert checkpoints.unsafe_globals(REPO / "reference_model" / "omni.pth") == []


def test_the_reference_model_reads_its_resume_file_without_unpickling_code(tmp_path):
    """omni_bench_reference.train loads its resume state with weights_only=True: the state it saves must load so."""
    import torch

    from omni_bench_reference.train import read_resume

    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.ones(2, 3)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, 0.1, total_iters=5)
    config = torch.load(REPO / "reference_model" / "omni.pth", weights_only=True, map_location="cpu")["config"]
    path = tmp_path / "resume.pt"
    torch.save({"recipe": {"epochs": 5}, "training_set_sha256": "x", "sevenn_config": config,
                "model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict(),
                "scheduler_state_dict": scheduler.state_dict(), "history": [{"epoch": 1, "lr": 0.01}],
                "wall_s": 1.0}, path)
    assert read_resume(path)["sevenn_config"] == config
    torch.save({"evil": _RunsCode(tmp_path / "PWNED")}, path)
    with pytest.raises(Exception, match="Weights only load failed"):
        read_resume(path)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("where", ["card", "sweep"])
def test_a_file_naming_an_omni_bench_function_that_builds_no_calculator_runs_nothing(tmp_path, capsys, where):
    """Only the calculator factories are allowed, not any callable in an omni_bench module."""
    factory, marker = "omni_bench.models.environments:_run", tmp_path / "PWNED"
    args = {"command": ["sh", "-c", f"touch {marker}"], "what": "x"}
    if where == "card":
        argv = ["run", "-m", str(card_file(tmp_path, "evil", factory, args=args)), "-t", "s22"]
    else:
        sweep = tmp_path / "sweep.yaml"
        sweep.write_text(yaml.safe_dump({"models": [{"model": factory, "args": args}], "tasks": ["s22"],
                                         "executor": {"name": "serial"}}))
        argv = ["sweep", str(sweep)]
    code, _, err = omni(capsys, *argv, "--store", str(tmp_path / "s.db"), "--out", str(tmp_path / "out"),
                        "--no-progress")
    assert code == 2 and f"names factory '{factory}'" in err and "--trust-code" in err and len(err.splitlines()) == 1
    assert not marker.exists()


@pytest.mark.parametrize("factory, fields, problem", [
    ("omni_bench.models.factories:emt", {"args": {"command": "id"}},
     "field 'args.command' is not an argument of omni_bench.models.factories:emt (it takes device)"),
    ("omni_bench.models.factories:tabulated", {"args": {"key": 5}}, "field 'args.key' must be str, got 5; quote it"),
    ("omni_bench.models.factories:pyscf_dft", {"args": {"grids_level": [3]}}, "field 'args.grids_level' must be int"),
    ("omni_bench.models.factories:sevennet", {"args": {"model": "x", "file_type": "torchscript"}},
     "field 'args.file_type' is not an argument"),  # sevennet's **kwargs declare nothing
    ("omni_bench.models.factories:emt", {"channels": {"A": {"level_of_theory": "EMT"}}, "default_channel": "A",
                                         "channel_arg": "model"},
     "field 'channel_arg' is not an argument"),
])
def test_a_calculator_factory_gets_only_the_arguments_it_declares_of_the_declared_types(tmp_path, factory, fields,
                                                                                      problem):
    card = card_file(tmp_path, "card", factory, **fields)
    with pytest.raises(OmniBenchError, match=re.escape(f"{card}: {problem}")):
        resolve_models([str(card)])
    (trusted,) = resolve_models([str(card)], trust_code=True)  # --trust-code lets it through, on record
    assert problem.partition(" (")[0] in trusted.trusted_code


def test_model_args_and_sweep_args_are_checked_against_the_factory_too(tmp_path, capsys):
    with pytest.raises(OmniBenchError, match="^--model-arg command is not an argument of omni_bench.models"):
        resolve_models(["emt"], model_args=["command=id"])
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("models:\n  - {model: emt, args: {device: 1}}\ntasks: [s22]\nexecutor: {name: serial}\n")
    code, _, err = omni(capsys, "sweep", str(sweep), "--store", str(tmp_path / "s.db"), "--no-progress")
    assert code == 2 and f"sweep file {sweep}: field 'models[0].args.device' must be str, got 1" in err


def test_every_calculator_factory_declares_plain_typed_arguments_and_every_shipped_card_fits():
    for factory in registry.CALCULATOR_FACTORIES:
        declared = registry.factory_arguments(factory)
        assert "device" in declared, factory
        assert all(set(kinds) <= {str, int, float, bool, type(None)} for kinds in declared.values()), factory
    for name, path in registry.builtin_cards().items():
        card = registry.find_card(name)
        assert card.factory in registry.CALCULATOR_FACTORIES, path
        assert registry.check_factory_args(card, registry.card_args_given(card), trust_code=False) is None, path


def _crafted_checkpoint(path: Path, marker: Path, how: str) -> None:
    """A torch file that would run ``touch marker`` when loaded: by its pickle (``__reduce__``), or by diep's
    ``Potential.load``, which builds ``{"@module", "@class", "init_args"}`` entries of model.pt."""
    import torch

    if how == "reduce":
        torch.save({"model": _RunsCode(marker)}, path)
    else:
        torch.save({"model": {"@module": "subprocess", "@class": "run", "init_args": {"args": ["touch", str(marker)]}}},
                   path)


@pytest.mark.parametrize("how", ["reduce", "@module"])
@pytest.mark.parametrize("form", ["folder", "file"])
def test_a_crafted_checkpoint_given_to_diep_is_refused_before_it_loads(tmp_path, capsys, form, how):
    folder, marker = tmp_path / "model", tmp_path / "PWNED"
    folder.mkdir()
    _crafted_checkpoint(folder / "model.pt", marker, how)
    (folder / "model.json").write_text('{"@class": "Potential"}')
    given = folder if form == "folder" else folder / "model.pt"
    code, _, err = omni(capsys, "run", "-m", "diep", "--model-arg", f"model={given}", "-t", "s22", "--limit", "1",
                        "--store", str(tmp_path / "s.db"), "--out", str(tmp_path / "out"), "--no-progress")
    assert code == 2 and f"diep would load {folder / 'model.pt'}" in err and "--trust-code" in err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_every_factory_and_a_cards_checkpoint_get_the_check_and_folders_are_read_by_content(tmp_path, monkeypatch):
    import pickle

    evil = tmp_path / "evil.pt"
    _crafted_checkpoint(evil, tmp_path / "PWNED", "reduce")
    (tabulated,) = resolve_models(["omni_bench.models.factories:tabulated"], model_args=[f"key={evil}"])
    with pytest.raises(OmniBenchError, match="tabulated would load .*posix.system"):
        checkpoints.check_model_files(tabulated)
    card = card_file(tmp_path, "card", "omni_bench.models.factories:sevennet", args={"model": "{checkpoint}"},
                     checkpoint=str(evil))
    with pytest.raises(OmniBenchError, match=f"sevennet would load {evil}"):
        checkpoints.check_model_files(resolve_models([str(card)])[0])
    monkeypatch.setenv("OMNI_BENCH_7NET_OMNI", str(evil))  # a card's checkpoint_env
    with pytest.raises(OmniBenchError, match=f"sevennet would load {evil}"):
        checkpoints.check_model_files(resolve_models(["7net-omni"])[0])

    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "notes.txt").write_text("config\nname\n")  # reads as a GLOBAL: names that can be imported, refused
    (folder / "data").write_bytes(pickle.dumps({"energies": [1.0, 2.0]}))  # plain data: no unpickler runs code
    (folder / "config.json").write_text('{"cutoff": 5.0}')
    (variant,) = resolve_models(["diep"], model_args=[f"model={folder}"])
    with pytest.raises(OmniBenchError, match=r"notes.txt: it is a pickle that calls onfig.name"):
        checkpoints.check_model_files(variant)
    (folder / "notes.txt").write_text("A model folder.\n")
    assert checkpoints.check_model_files(variant) is None
    (folder / "weights").write_bytes(pickle.dumps(os.getcwd, protocol=0))  # no loadable name, still a pickle
    with pytest.raises(OmniBenchError, match=r"weights: it is a pickle that calls posix.getcwd"):
        checkpoints.check_model_files(variant)
    (trusting,) = resolve_models(["diep"], model_args=[f"model={folder}"], trust_code=True)
    assert checkpoints.check_model_files(trusting) == f"checkpoint {folder / 'weights'}: it is a pickle that " \
                                                      "calls posix.getcwd"
    for n in range(checkpoints.MAX_FOLDER_ENTRIES):
        (folder / f"f{n}").touch()
    with pytest.raises(OmniBenchError, match="a folder of more than 1000 entries"):
        checkpoints.check_model_files(variant)


def test_a_pkg_checkpoint_entry_cannot_leave_its_package(tmp_path):
    card = card_file(tmp_path, "card", "omni_bench.models.factories:sevennet", args={"model": "{checkpoint}"},
                     checkpoint="pkg:sevenn/../../../../tmp/evil.pth")
    with pytest.raises(OmniBenchError, match="field 'checkpoint' 'pkg:sevenn/../../../../tmp/evil.pth': a 'pkg:'"):
        resolve_models([str(card)])


def _cluster_config(folder: Path, **fields) -> Path:
    config = folder / "cluster.yaml"
    config.write_text(f"cluster: {json.dumps({'queue': 'gpu', 'cores': 1, 'memory': '1GB', **fields})}\n")
    return config


@pytest.mark.parametrize("key, value", [
    ("job_script_prologue", ["touch {marker}"]), ("job_extra_directives", ["--x\ntouch {marker}"]),
    ("python", "touch {marker}; python"), ("worker_extra_args", ["--preload", "x"]),
])
def test_cluster_fields_that_reach_the_shell_need_trust_code(tmp_path, capsys, monkeypatch, key, value):
    """A sweep on slurm with a stand-in sbatch on PATH that keeps the job script: nothing is submitted, and one
    line names the file and the field."""
    from omni_bench.executors.slurm import load_cluster_config

    marker, submitted = tmp_path / "PWNED", tmp_path / "submitted.sh"
    (tmp_path / "bin").mkdir()
    sbatch = tmp_path / "bin" / "sbatch"
    sbatch.write_text(f"#!/bin/sh\ncp \"$1\" {submitted}\necho 'Submitted batch job 1'\n")
    sbatch.chmod(0o755)
    monkeypatch.setenv("PATH", f"{sbatch.parent}{os.pathsep}{os.environ['PATH']}")
    value = json.loads(json.dumps(value).replace("{marker}", str(marker)))
    config = _cluster_config(tmp_path, **{key: value})
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"models: [emt]\ntasks: [s22]\nexecutor: {{name: slurm, cluster_config: {config.name}}}\n")
    code, _, err = omni(capsys, "sweep", str(sweep), "--store", str(tmp_path / "s.db"), "--no-progress")
    assert code == 2 and f"{config}: field 'cluster.{key}'" in err and "--trust-code" in err
    assert err.partition("omni-bench: error: ")[2].count("\n") == 1, err  # one line
    assert not submitted.exists()
    assert load_cluster_config(config, trust_code=True).cluster[key] == value  # trusted: passed on, with a warning
    assert "warning: --trust-code" in capsys.readouterr().err


@pytest.mark.parametrize("key, value, problem", [
    ("queue", "gpu\n#SBATCH --export=ALL,LD_PRELOAD=/tmp/x.so", "must be one word"),
    ("account", "a;touch x", "must be one word"), ("walltime", "$(id)", "must be one word"),
    ("memory", "1GB && id", "must be one word"), ("cores", "4", "must be int, got '4'"), ("nanny", 1, "must be bool"),
    ("queu", "gpu", "did you mean 'queue'"),
])
def test_plain_cluster_fields_must_be_plain_words(tmp_path, key, value, problem):
    from omni_bench.executors.slurm import load_cluster_config

    config = _cluster_config(tmp_path, **{key: value})
    with pytest.raises(OmniBenchError, match=f"{re.escape(str(config))}: field 'cluster.{key}' .*{re.escape(problem)}"):
        load_cluster_config(config)


def test_plain_cluster_fields_need_no_trust(tmp_path):
    from omni_bench.executors.slurm import load_cluster_config

    config = _cluster_config(tmp_path, local_directory="$TMPDIR", account="my-project", walltime="04:00:00",
                             log_directory="dask-logs", job_name="omni_bench-1", death_timeout=60, nanny=True)
    assert load_cluster_config(config).cluster["local_directory"] == "$TMPDIR"


def test_a_sweep_file_cannot_choose_the_dask_scheduler_without_trust_code(tmp_path, capsys):
    """Dask unpickles what a scheduler's workers send back: a file may not pick one."""
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("models: [emt]\ntasks: [s22]\nexecutor: {name: dask, scheduler: 'tcp://203.0.113.1:8786'}\n")
    code, _, err = omni(capsys, "sweep", str(sweep), "--store", str(tmp_path / "s.db"), "--no-progress")
    assert code == 2 and "field 'executor.scheduler'" in err and "--trust-code" in err
