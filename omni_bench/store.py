"""The SQLite result store: one row per (model fingerprint, channel, task, task version, item).

Each item is committed as soon as it finishes, so a run killed at any moment loses at most the item in
flight, and a resumed run skips everything already stored. Beside the items, each (fingerprint, channel,
task, version) records the hash of the task inputs its items were computed from (protocol, parameters,
data files), so that a task file edited without a version bump cannot reuse stale values.
"""

from __future__ import annotations

import json
import math
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from .errors import OmniBenchError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    fingerprint TEXT NOT NULL,
    channel TEXT NOT NULL,
    task TEXT NOT NULL,
    task_version INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    values_json TEXT,
    error TEXT,
    notes TEXT,
    wall_s REAL,
    finished_at REAL NOT NULL,
    PRIMARY KEY (fingerprint, channel, task, task_version, item_id)
);
CREATE TABLE IF NOT EXISTS task_inputs (
    fingerprint TEXT NOT NULL,
    channel TEXT NOT NULL,
    task TEXT NOT NULL,
    task_version INTEGER NOT NULL,
    inputs_hash TEXT NOT NULL,
    PRIMARY KEY (fingerprint, channel, task, task_version)
);
CREATE TABLE IF NOT EXISTS fingerprints (
    fingerprint TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    spec_json TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class StoreKey:
    """Where one model variant's items of one task are stored: the model's store fingerprint (its fingerprint
    id, or ``ID/device@host`` for a protocol that measures the hardware), its channel ('' for none), and the
    name and version of the task whose computation the items are (see ``identity.py``)."""

    fingerprint: str
    channel: str
    task: str
    version: int

    def params(self) -> tuple[str, str, str, int]:
        return self.fingerprint, self.channel, self.task, self.version


@dataclass
class StoredItem:
    item_id: str
    status: str
    values: dict[str, float]
    error: str | None
    notes: list[str]
    wall_s: float | None


def stored_value(results: dict[str, StoredItem], item_id: str, key: str) -> tuple[float | None, str | None]:
    """One stored value of an item, or None and why not (not computed, failed, or not returned)."""
    stored = results.get(item_id)
    if stored is None:
        return None, "not computed"
    if stored.status != "ok":
        return None, stored.error or "failed"
    if key not in stored.values:
        return None, f"protocol did not return {key!r}"
    return stored.values[key], None


def finite_value(results: dict[str, StoredItem], item_id: str, key: str,
                 optional: bool = False) -> tuple[float | None, str | None] | None:
    """``stored_value``, with a non-finite value as a failure; None where an ``optional`` quantity was not
    returned (a stress the model or structure does not have), which is left out rather than failed."""
    value, error = stored_value(results, item_id, key)
    if value is None and optional and error == f"protocol did not return {key!r}":
        return None
    if value is not None and not math.isfinite(value):
        return None, f"non-finite {key}"
    return value, error


def default_store_path() -> Path:
    return Path(platformdirs.user_cache_dir("omni-bench")) / "results.sqlite"


class ResultStore:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_store_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = self._open_with_retries(self.path)
        except (OSError, sqlite3.Error) as exc:
            raise OmniBenchError(f"cannot open result store {self.path}: {exc} (is the disk full or the folder "
                                 "read-only? --store PATH picks another place)") from None

    @staticmethod
    def _open_with_retries(path: Path, patience_s: float = 60.0) -> sqlite3.Connection:
        """Connect, switch to WAL and create the schema. Two runs opening a fresh store at once can get
        "database is locked" straight away from the journal-mode switch (SQLite skips its busy handler there),
        so that one error is retried with backoff until ``patience_s`` has passed."""
        deadline, pause = time.monotonic() + patience_s, 0.05
        while True:
            db = sqlite3.connect(path, timeout=patience_s, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
                return db
            except sqlite3.OperationalError as exc:
                db.close()
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(pause)
                pause = min(2 * pause, 1.0)

    def close(self) -> None:
        self.db.close()

    def register_fingerprint(self, fingerprint: str, label: str, spec: dict[str, Any]) -> None:
        self._write("INSERT OR REPLACE INTO fingerprints VALUES (?, ?, ?)",
                    (fingerprint, label, json.dumps(spec, sort_keys=True, default=str)))

    def put(self, key: StoreKey, model: str, item_id: str, status: str,
            values: dict[str, float] | None = None, error: str | None = None,
            notes: list[str] | None = None, wall_s: float | None = None) -> None:
        """Store one finished item (replacing an earlier row for it) and commit at once."""
        self._write(
            "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*key.params(), item_id, model, status,
             json.dumps(values) if values is not None else None, error,
             json.dumps(sorted(notes)) if notes else None, wall_s, time.time()),
        )

    def get(self, key: StoreKey) -> dict[str, StoredItem]:
        """The stored items under ``key``. A row whose JSON cannot be read is left out (so it is computed
        again and replaced), with a warning naming it."""
        rows = self._read("SELECT item_id, status, values_json, error, notes, wall_s FROM results "
                          "WHERE fingerprint=? AND channel=? AND task=? AND task_version=?", key.params())
        items = {}
        for r in rows:
            try:
                values, notes = json.loads(r[2]) if r[2] else {}, json.loads(r[4]) if r[4] else []
                if not isinstance(values, dict) or not all(isinstance(v, (int, float)) for v in values.values()):
                    raise ValueError("values_json is not a mapping of numbers")
            except (TypeError, ValueError) as exc:
                print(f"omni-bench: warning: {self.path}: the stored row of item {r[0]!r} ({key.task}) cannot be read "
                      f"({exc}); it is computed again", file=sys.stderr)
                continue
            items[r[0]] = StoredItem(r[0], r[1], values, r[3], notes, r[5])
        return items

    def inputs_hash(self, key: StoreKey) -> str | None:
        """The task-inputs hash the items under ``key`` were computed from (None: none recorded yet)."""
        rows = self._read("SELECT inputs_hash FROM task_inputs WHERE fingerprint=? AND channel=? AND task=? "
                          "AND task_version=?", key.params())
        return rows[0][0] if rows else None

    def done_per_device(self, key: StoreKey) -> dict[StoreKey, set[str]]:
        """Item ids stored under every device-specific fingerprint of ``key``'s model (``ID/device@host``, for
        protocols that measure the hardware), by key."""
        prefix = f"{key.fingerprint}/"
        rows = self._read("SELECT fingerprint, item_id FROM results WHERE substr(fingerprint, 1, ?) = ? AND "
                          "channel=? AND task=? AND task_version=?",
                          (len(prefix), prefix, key.channel, key.task, key.version))
        done: dict[StoreKey, set[str]] = {}
        for fingerprint, item_id in rows:
            done.setdefault(StoreKey(fingerprint, key.channel, key.task, key.version), set()).add(item_id)
        return done

    def _read(self, sql: str, params: tuple) -> list[tuple]:
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from None

    def set_inputs_hash(self, key: StoreKey, inputs_hash: str) -> None:
        self._write("INSERT OR REPLACE INTO task_inputs VALUES (?, ?, ?, ?, ?)", (*key.params(), inputs_hash))

    def drop(self, key: StoreKey) -> None:
        """Delete every item under ``key`` (their task inputs changed and the user asked to recompute)."""
        self._write("DELETE FROM results WHERE fingerprint=? AND channel=? AND task=? AND task_version=?",
                    key.params())

    def _write(self, sql: str, params: tuple) -> None:
        try:
            with self.db:
                self.db.execute(sql, params)
        except sqlite3.OperationalError as exc:
            raise OmniBenchError(f"cannot write to result store {self.path}: {exc}; items finished before this "
                                 "are kept: free space or fix permissions and run the same command to resume") from None
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from None

    def _damaged(self, exc: sqlite3.DatabaseError) -> OmniBenchError:
        """A store whose file is corrupted: say what can still be read and how to save it."""
        readable = []
        for table in ("results", "task_inputs", "fingerprints"):
            try:
                readable.append(f"{self.db.execute(f'SELECT count(*) FROM {table}').fetchone()[0]} {table} rows")
            except sqlite3.DatabaseError:
                readable.append(f"{table}: unreadable")
        return OmniBenchError(
            f"result store {self.path} is damaged ({exc}); readable: {', '.join(readable)}. Salvage what is left "
            f"with: sqlite3 {self.path} .recover | sqlite3 recovered.sqlite, then run with --store recovered.sqlite "
            "(what was lost is computed again); or start afresh with another --store")
