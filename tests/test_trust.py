"""Files users pass in are data, not code: a model card or sweep file names only omni-bench's own factories
and the plug-ins', and a checkpoint a package would unpickle is read without running it, unless --trust-code."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
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
    assert code == 2 and "sevenn unpickles its checkpoint" in err and "posix.system" in err and "--trust-code" in err
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
    assert variant.card.is_packaged(bundled)
    assert checkpoints.unsafe_globals(bundled) == []  # numpy arrays in sevenn's config are allowed
    copy = tmp_path / "copy.pth"
    shutil.copy(bundled, copy)
    (user,) = resolve_models(["7net-0"], model_args=[f"model={copy}"])
    assert checkpoints.check_model_files(user) is None and not user.card.is_packaged(copy)
    assert checkpoints.unsafe_globals(REPO / "reference_model" / "omni.pth") == []


def test_the_reference_model_reads_its_resume_file_without_unpickling_code(tmp_path):
    """reference_model.train loads its resume state with weights_only=True: the state it saves must load so."""
    import torch

    from reference_model.train import read_resume

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
