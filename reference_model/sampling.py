"""Which frames train, which validate, and how batches are composed (the domain-bridging set mixing).

A training frame is one structure labelled at one level of theory (``info['channel']``); a structure id
(``info['id']``) can carry several labels (domain-bridging-set geometries: PBE0 and GFN2; replay
structures: PBE and R2SCAN).  Validation holds out whole structures, so no geometry is in both sets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms


def validation_ids(frames: list[Atoms], fraction: float, seed: int) -> set[str]:
    """Structure ids held out for validation: ``round(fraction * n)`` of each channel's n ids, seeded.

    A channel with at least two structures always gives at least one.  A held-out id takes all its labels
    along, and ids already held out for another channel count towards this channel's share, so channels
    that share structures (DBS, replay) are not held out twice over.
    """
    ids_by_channel: dict[str, set[str]] = {}
    for atoms in frames:
        ids_by_channel.setdefault(atoms.info["channel"], set()).add(atoms.info["id"])
    rng = np.random.default_rng(seed)
    held: set[str] = set()
    for channel in sorted(ids_by_channel):
        ids = ids_by_channel[channel]
        count = round(fraction * len(ids))
        if fraction > 0 and len(ids) >= 2:
            count = max(1, count)
        free = sorted(ids - held)
        held.update(str(i) for i in rng.permutation(free)[:max(0, count - len(ids & held))])
    return held


@dataclass(frozen=True)
class Partition:
    """Training frames (``main`` and the DBS pool mixed in at a fixed fraction) and validation frames."""

    main: list[Atoms]
    dbs: list[Atoms]
    validation: list[Atoms]


def partition(frames: list[Atoms], held_out: set[str], mix_dbs: bool, keep_channel: str) -> Partition:
    """Split frames for one training variant; every variant sees the same validation frames.

    With ``mix_dbs`` the DBS frames (both labels) form their own pool for :class:`DBSMixingSampler`.
    Without it a DBS geometry keeps only its ``keep_channel`` label, as an ordinary frame of that channel,
    so that channel sees the same data either way and only the cross-level duplicates are dropped.
    """
    validation = [a for a in frames if a.info["id"] in held_out]
    training = [a for a in frames if a.info["id"] not in held_out]
    if mix_dbs:
        return Partition([a for a in training if not a.info["dbs"]], [a for a in training if a.info["dbs"]],
                         validation)
    kept = [a for a in training if not a.info["dbs"] or a.info["channel"] == keep_channel]
    return Partition(kept, [], validation)


class DBSMixingSampler:
    """Batches of frame indices with ``round(dbs_fraction * batch_size)`` DBS frames in every full batch.

    Each epoch visits every main frame once (shuffled); the DBS frames are drawn from a stream of
    reshuffled passes over the DBS pool, so they recur as often as the fraction asks.  The last, shorter
    batch gets the DBS share that keeps its fraction closest to the setting.  Seeded per epoch, so an
    interrupted run resumes with the very batches it would have seen.
    """

    def __init__(self, main: list[int], dbs: list[int], batch_size: int, dbs_fraction: float, seed: int) -> None:
        if not 0.0 <= dbs_fraction < 1.0:
            raise ValueError(f"dbs_fraction must be in [0, 1), got {dbs_fraction}")
        self.dbs_per_batch = round(dbs_fraction * batch_size)
        if dbs_fraction > 0 and self.dbs_per_batch == 0:
            raise ValueError(f"dbs_fraction {dbs_fraction} gives no DBS frame in a batch of {batch_size}")
        if self.dbs_per_batch >= batch_size:
            raise ValueError(f"dbs_fraction {dbs_fraction} leaves no room for other frames in a batch of {batch_size}")
        if self.dbs_per_batch and not dbs:
            raise ValueError("dbs_fraction > 0 but the DBS pool is empty")
        if not main:
            raise ValueError("no training frames")
        self.main, self.dbs = list(main), list(dbs)
        self.batch_size, self.dbs_fraction, self.seed = batch_size, dbs_fraction, seed

    def batches(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        order = [self.main[i] for i in rng.permutation(len(self.main))]
        main_per_batch = self.batch_size - self.dbs_per_batch
        stream: list[int] = []
        out = []
        for start in range(0, len(order), main_per_batch):
            chunk = order[start:start + main_per_batch]
            n_dbs = self.dbs_per_batch if len(chunk) == main_per_batch else \
                round(self.dbs_fraction * len(chunk) / (1.0 - self.dbs_fraction))
            while len(stream) < n_dbs:
                stream.extend(self.dbs[i] for i in rng.permutation(len(self.dbs)))
            out.append(chunk + stream[:n_dbs])
            del stream[:n_dbs]
        return out
