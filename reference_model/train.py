"""Train the bundled ``omni`` reference model:
``python -m omni_bench_reference.train --config FILE [--resume] [--out DIR]``.

Starts from 7net-mf-0, appends the new channels with sevenn's modal-append machinery, and trains all
parameters on the multi-task loss (plus the selective penalty on theta_T, plus DBS mixing, as configured).
Every epoch writes, in the out dir: ``resume.pt`` (model, optimizer and scheduler state, history),
``checkpoint.pth`` (the shippable model: no optimizer state, readable with ``torch.load(weights_only=True)``
and by ``sevenn.calculator.SevenNetCalculator(model=path, modal=CHANNEL)``), ``log.csv`` and
``metrics.json`` (the figures the model card needs).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import platform
import sys
import time
from importlib.metadata import version
from pathlib import Path

import torch

from omni_bench.data import sha256_file
from omni_bench.errors import OmniBenchError

from . import channels as ch
from .recipe import (
    RecipeConfig,
    batch_loss,
    collate,
    count_frames,
    domain_b_errors,
    predict,
    read_frames,
    to_graph,
    validation_errors,
)
from .sampling import DBSMixingSampler, partition, validation_ids
from .training_set import TEST_POOLS

RESUME_FILE = "resume.pt"
SHIPPED_FILE = "checkpoint.pth"


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _hardware(device: torch.device) -> str:
    from omni_bench.results import cpu_name

    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (host CPU {cpu_name()})"
    return f"CPU: {cpu_name()}, {torch.get_num_threads()} thread(s)"


def _save_atomically(obj: dict, path: Path) -> None:
    partial = path.with_suffix(path.suffix + ".part")
    torch.save(obj, partial)
    os.replace(partial, path)


def read_resume(path: Path) -> dict:
    """The resume state ``train`` saves: plain containers, numbers and tensors, so torch's ``weights_only``
    loader reads it and a resume file from elsewhere cannot run code."""
    return torch.load(path, weights_only=True, map_location="cpu")


def _write_log(history: list[dict], path: Path) -> None:
    columns = sorted({k for row in history for k in row}, key=lambda k: (k != "epoch", k))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


def _flat_validation(errors: dict) -> dict:
    return {f"val_{metric}_{channel}": round(value, 4) for channel, entry in errors.items()
            for metric, value in entry.items() if metric != "frames"}


def train(config: RecipeConfig, out: Path, resume: bool = False, max_minutes: float | None = None) -> dict:
    """Run (or continue) one training; returns the metrics written to ``metrics.json``. With ``max_minutes``,
    no epoch starts that the last epoch's duration says would end after that many minutes of this call."""
    setup_start = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    device = _device(config.device)
    out.mkdir(parents=True, exist_ok=True)
    frames = read_frames(config.training_set_path, config.max_structures_per_pool)
    test = {pool: [a for a in frames if a.info["pool"] == pool] for pool in TEST_POOLS}
    frames = [a for a in frames if a.info["pool"] not in TEST_POOLS]
    training_set_sha256 = sha256_file(config.training_set_path)
    held_out = validation_ids(frames, config.validation_fraction, config.seed)
    split = partition(frames, held_out, mix_dbs=config.dbs_fraction > 0, keep_channel=config.dbs_keep_channel)
    training = split.main + split.dbs

    state = read_resume(out / RESUME_FILE) if resume else None
    if state is not None:
        if {**state["recipe"], "epochs": config.epochs} != config.as_dict():
            raise ValueError(f"{out / RESUME_FILE} was written by another recipe; only 'epochs' may change on resume")
        if state["training_set_sha256"] != training_set_sha256:
            raise ValueError(f"{config.training_set_path} changed since {out / RESUME_FILE} was written")
        sevenn_config = state["sevenn_config"]
    else:
        new = {c: [a for a in training if a.info["channel"] == c] for c in config.new_channels}
        sevenn_config, initial_state = ch.append_channels(config.base_model, new)
    model = ch.build_model(sevenn_config, state["model_state_dict"] if state else initial_state).to(device)
    model.set_is_batch_data(True)
    cutoff = float(sevenn_config["cutoff"])
    if state is None and config.warm_start_from:
        source_energies = {c: [e for e, _ in predict(model, frames_c, config.warm_start_from, cutoff,
                                                      config.batch_size, device)] for c, frames_c in new.items()}
        ch.warm_start(model, sevenn_config, config.warm_start_from, new, source_energies)
    unknown = {a.info["channel"] for a in frames} - set(model.modal_map)
    if unknown:
        raise ValueError(f"frames with channels {sorted(unknown)} that the model does not have")
    unweighted = {a.info["channel"] for a in training} - set(config.channel_weights)
    if unweighted:
        raise ValueError(f"channel_weights has no weight for {sorted(unweighted)}")

    masks = ch.task_specific_mask(model, list(config.regularised_channels) if config.regularised_channels else None)
    # the penalty's anchor: the task rows as they start (zero after sevenn's append; the copied rows after a
    # warm start), kept with the resume state
    parameters = dict(model.named_parameters())
    if state is not None:
        anchor = {name: rows.to(device) for name, rows in state["penalty_anchor"].items()}
    else:
        anchor = {name: parameters[name][mask].detach().clone() for name, mask in masks.items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay_per_epoch)
    history: list[dict] = []
    wall_before = 0.0
    best = {"loss": float("inf"), "epoch": 0, "state": None}
    if state is not None:
        optimizer.load_state_dict(state["optimizer_state_dict"])
        scheduler.load_state_dict(state["scheduler_state_dict"])
        history, wall_before = state["history"], state["wall_s"]
        best = {"loss": state["best_loss"], "epoch": state["best_epoch"], "state": state["best_state_dict"]}

    graphs = [to_graph(a, cutoff) for a in training]
    validation_graphs = [to_graph(a, cutoff) for a in split.validation]
    sampler = DBSMixingSampler(list(range(len(split.main))), list(range(len(split.main), len(training))),
                               config.batch_size, config.dbs_fraction, config.seed)
    start = time.perf_counter()
    setup_s = start - setup_start
    wall = wall_before
    stopped = "epochs"
    for epoch in range(len(history) + 1, config.epochs + 1):
        epoch_start = time.perf_counter()
        if config.patience is not None and history and epoch - 1 - best["epoch"] >= config.patience:
            stopped = "early_stopping"
            break
        if max_minutes is not None and history and (
                epoch_start - setup_start + history[-1]["epoch_s"] > 60 * max_minutes):
            print(f"stopping before epoch {epoch}: --max-minutes {max_minutes:g} reached", flush=True)
            stopped = "max_minutes"
            break
        model.train()
        losses, penalties = [], []
        for indices in sampler.batches(epoch):
            optimizer.zero_grad()
            output = model(collate([graphs[i] for i in indices]).to(device))
            loss = batch_loss(output, config)
            penalty = ch.selective_penalty(model, masks, anchor)
            (loss + config.regularisation * penalty if config.regularisation else loss).backward()
            optimizer.step()
            losses.append(loss.item())
            penalties.append(penalty.item())
        learning_rate = scheduler.get_last_lr()[0]
        scheduler.step()
        errors, validation_loss = validation_errors(model, validation_graphs, config, device)
        history.append({"epoch": epoch, "lr": learning_rate, "train_loss": sum(losses) / len(losses),
                        "val_loss": validation_loss, "theta_T_sq_sum": penalties[-1], "batches": len(losses),
                        "epoch_s": round(time.perf_counter() - epoch_start, 2), **_flat_validation(errors)})
        wall = wall_before + time.perf_counter() - start
        if validation_loss < best["loss"] - config.min_delta or best["state"] is None:
            best = {"loss": validation_loss, "epoch": epoch,
                    "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
            _save_atomically(ch.shipped_checkpoint(sevenn_config, model, epoch, config.as_dict()), out / SHIPPED_FILE)
        _save_atomically({"recipe": config.as_dict(), "training_set_sha256": training_set_sha256,
                          "sevenn_config": sevenn_config,
                          "model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict(),
                          "scheduler_state_dict": scheduler.state_dict(), "history": history, "wall_s": wall,
                          "best_loss": best["loss"], "best_epoch": best["epoch"], "best_state_dict": best["state"],
                          "penalty_anchor": anchor},
                         out / RESUME_FILE)
        _write_log(history, out / "log.csv")
        print(f"epoch {epoch}/{config.epochs} loss {history[-1]['train_loss']:.5f} "
              f"({history[-1]['epoch_s']:.1f} s) " + " ".join(
                  f"{c}: {e['energy_mae_meV_per_atom']:.1f} meV/atom {e['force_mae_meV_per_A']:.0f} meV/A"
                  for c, e in errors.items()), flush=True)

    if best["state"] is not None:  # the shipped checkpoint and every figure below are the best epoch's
        model.load_state_dict(best["state"])
    metrics = _metrics(config, training_set_sha256, model, masks, split, held_out, history, device, out, wall)
    best_row = next((row for row in history if row["epoch"] == best["epoch"]), {})
    metrics["final_validation"] = {k: v for k, v in best_row.items() if k.startswith("val_") and k != "val_loss"}
    metrics.update(stopped=stopped, best_epoch=best["epoch"], best_val_loss=best["loss"],
                   domain_b=domain_b_errors(model, test["test_dimers"], test["test_fragments"], config.new_channels[0],
                                            cutoff, config.batch_size, device))
    metrics["setup_s_last_call"] = round(setup_s, 1)
    if max_minutes is not None:
        metrics["max_minutes_last_call"] = max_minutes
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def _metrics(config: RecipeConfig, training_set_sha256: str, model: torch.nn.Module, masks: dict, split,
             held_out: set[str], history: list[dict], device: torch.device, out: Path, wall: float) -> dict:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    fixed = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    shipped = out / SHIPPED_FILE
    dbs_frames = [a for a in split.main + split.dbs if a.info["dbs"]]
    first_new_rows = ch.channel_rows(model, config.new_channels[0]).values()
    return {
        "name": config.name, "recipe": config.as_dict(),
        "training_set": {"path": str(config.training_set_path), "sha256": training_set_sha256},
        "parameters": {"trainable": trainable, "fixed_shift_scale": fixed,
                       "theta_T_regularised": int(sum(int(m.sum()) for m in masks.values())),
                       "theta_T_per_channel": int(sum(int(m.sum()) for m in first_new_rows))},
        "channels": list(model.modal_map), "modal_map": dict(model.modal_map),
        "frames": {"train": count_frames(split.main + split.dbs), "validation": count_frames(split.validation),
                   "validation_structures": len(held_out)},
        "dbs": {"structures_in_training": len({a.info["id"] for a in dbs_frames}),
                "frames_in_training": len(dbs_frames), "mixed_in": config.dbs_fraction > 0,
                "dbs_fraction": config.dbs_fraction},
        "regularisation_lambda": config.regularisation, "loss_weights": {
            "channels": config.channel_weights, "energy": config.energy_weight, "force": config.force_weight,
            "stress": config.stress_weight, "huber_delta": config.huber_delta},
        "epochs": len(history), "wall_s_training": round(wall, 1),
        "mean_epoch_s": round(sum(r["epoch_s"] for r in history) / max(len(history), 1), 2),
        "hardware": _hardware(device), "device": str(device), "platform": platform.platform(),
        "versions": {name: version(name) for name in ("torch", "sevenn", "e3nn", "ase")},
        "checkpoint": {"file": SHIPPED_FILE, "bytes": shipped.stat().st_size if shipped.exists() else None,
                       "sha256": sha256_file(shipped) if shipped.exists() else None},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m omni_bench_reference.train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="recipe YAML (reference_model/configs/*.yaml)")
    parser.add_argument("--out", help="output folder (default: runs/reference_model/<name>)")
    parser.add_argument("--resume", action="store_true", help=f"continue from OUT/{RESUME_FILE}")
    parser.add_argument("--epochs", type=int, help="train this many epochs instead of the config's")
    parser.add_argument("--seed", type=int, help="seed of the validation split and batch order instead of the config's")
    parser.add_argument("--max-minutes", type=float, help="start no epoch that would end after this many minutes")
    parser.add_argument("--regularisation", type=float, metavar="LAMBDA",
                        help="selective penalty lambda instead of the config's (the ablation's scan of its strength)")
    args = parser.parse_args(argv)
    try:
        config = RecipeConfig.from_yaml(args.config)
    except OmniBenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.epochs is not None:
        config = dataclasses.replace(config, epochs=args.epochs)
    if args.seed is not None:
        config = dataclasses.replace(config, seed=args.seed)
    if args.regularisation is not None:
        config = dataclasses.replace(config, regularisation=args.regularisation)
    out = Path(args.out) if args.out else Path("runs") / "reference_model" / config.name
    metrics = train(config, out, resume=args.resume, max_minutes=args.max_minutes)
    print(json.dumps({"out": str(out), "final_validation": metrics["final_validation"],
                      "wall_s_training": metrics["wall_s_training"]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
