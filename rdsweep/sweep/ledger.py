"""An experiment directory: rdsweep's own ledger of which cells finished, independent of Ray's state.

    STORAGE/NAME/
        experiment.json           the protocol (dataset, size, budget, evaluation) every cell shares
        cells/<cell_id>.json      a cell's result, written atomically: converged | unconverged | diverged | failed
        checkpoints/<cell_id>.pt  the latest epoch of an interrupted or unconverged cell (removed once
                                  it converges or diverges)
        locks/<cell_id>.lock      held by the trial that trains the cell
        launch.lock               held by the running launch (launch.lock.json: who)
        grids/<cell_id>.png       data / reconstruction / sample grids ([evaluation] images = true)
        models/<cell_id>.pt       the evaluated weights ([evaluation] keep_model = true; checkpoints.load_model)
        examples/<cell_id>.npz    each example's R and D per split (uncertainty.save_examples): the paired
                                  comparisons of `rdsweep compare`; since rdsweep 0.5
        ray/launch-<time>/        Ray Tune's own state, one folder per launch
        launch-<time>.log         what that launch did, one line per event (command, versions, resources,
                                  each cell's start, epochs, retries and end), for auditing a sweep later
        launch.json               the latest launch: its name, start, command, trial resources, how many
                                  trials run at once, and every cell of its spec with the plan's action
                                  (run, resume, continue, skip), so `rdsweep status` knows the cells that
                                  never started
        progress/<cell_id>.json   a trial's progress as it goes: epoch of the cap, step of the epoch, latest
                                  valid objective, each epoch's seconds, start and `updated_at`, rewritten
                                  every few seconds while it lives (a heartbeat) and once more with
                                  `finished_at` when its result is written; kept, so the trial's time
                                  outside its epochs stays known
        frontier.parquet          written by `rdsweep collect`

Ray's `Tuner.restore` cannot add trials, so launch decides from this ledger what to train: a cell whose
result says converged or diverged is done; so is an unconverged one, unless the spec now allows more epochs
than it ran with, in which case it continues from its checkpoint (the epoch budget is a cap, not part of a
cell's identity); a failed or missing one runs again, from its checkpoint if any.
Writers and readers only need a shared filesystem, which is also what a multi-node Ray cluster needs.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from rdsweep.cells import Cell
from rdsweep.errors import UserError
from rdsweep.files import atomic_write
from rdsweep.sweep.schema import read_launch, read_progress, read_record, read_result
from rdsweep.training.result import CellResult, cell_result

# What an experiment directory may hold (the module docstring): each entry's kind, checked by check_layout.
LAYOUT = {**{name: "directory" for name in ("cells", "checkpoints", "locks", "progress", "grids", "models",
                                              "examples", "ray")},
          **{name: "file" for name in ("experiment.json", "launch.json", "launch.lock", "launch.lock.json")}}
FINISHED = ("converged", "diverged")      # nothing more to do, whatever the budget
DEFAULT_STORAGE = "rdsweep-results"


class Experiment:
    def __init__(self, path: str | Path):
        self.path = Path(path).absolute()
        self.name = self.path.name
        self.meta_path = self.path / "experiment.json"
        self.cells_dir = self.path / "cells"
        self.checkpoints_dir = self.path / "checkpoints"
        self.ray_dir = self.path / "ray"
        self.grids_dir = self.path / "grids"
        self.models_dir = self.path / "models"
        self.examples_dir = self.path / "examples"
        self.progress_dir = self.path / "progress"
        self.launch_path = self.path / "launch.json"
        self.lock_path = self.path / "launch.lock"
        self.holder_path = self.path / "launch.lock.json"   # who holds the lock, for the refusal message

    def check_layout(self, reads: tuple[str, ...] = (), writes: bool = False) -> None:
        """The ledger's layout, checked before a command acts on it: every entry of LAYOUT that exists is of
        its kind (a directory, or a regular file; a symbolic link counts as what it points to), the directories
        named in `reads` can be listed, and with `writes` (a launch) every directory is writable. A missing one
        is fine: rdsweep creates it when it needs it. A UserError names the first entry that does not fit, so a
        damaged ledger is one line and exit 2, not a trial failing on it (nothing is changed)."""
        try:
            self.name.encode("utf-8")
        except UnicodeEncodeError:   # a byte the file system's encoding could not decode
            raise UserError(f"experiment directory name {os.fsencode(self.name)!r} is not UTF-8: every result and "
                            "the frontier table carry it (Parquet strings are UTF-8); rename the directory "
                            "(nothing was changed)") from None
        for name, kind in LAYOUT.items():
            path = self.path / name
            try:
                st = os.stat(path)
            except FileNotFoundError:
                if os.path.islink(path):
                    raise UserError(f"{path} is a symbolic link to {os.readlink(path)}, which does not exist: "
                                    f"the experiment's {name} {kind} is missing; restore it or remove the link "
                                    "(nothing was changed)") from None
                continue
            except OSError as e:   # a link that loops, a folder this user cannot search
                raise UserError(f"cannot use {path}: {e.strerror}: the experiment's {name} must be a {kind} "
                                "(nothing was changed)") from None
            fits = stat.S_ISDIR(st.st_mode) if kind == "directory" else stat.S_ISREG(st.st_mode)
            if not fits:
                raise UserError(f"{path} is {_kind(st)}, not a {kind}: the experiment's ledger is damaged; "
                                f"restore it or move {name} away (nothing was changed)")
            need = (os.R_OK | os.W_OK | os.X_OK if writes else os.R_OK | os.X_OK if name in reads else 0)
            if kind == "directory" and need and not os.access(path, need):
                raise UserError(f"cannot use {path}: this user cannot {'write' if writes else 'read'} it: fix its "
                                "permissions (nothing was changed)")
        if writes and self.path.is_dir() and not os.access(self.path, os.R_OK | os.W_OK | os.X_OK):
            raise UserError(f"cannot use experiment directory {self.path}: this user cannot write it: fix its "
                            "permissions or choose another --storage (nothing was changed)")

    @classmethod
    def at(cls, storage: str | Path | None, name: str) -> "Experiment":
        if not name.strip() or name in (".", "..") or "/" in name or os.sep in name or "\0" in name:
            raise UserError(f"experiment name {name!r} (--name, or the spec's file stem) must be one path "
                            "segment, not empty (no '/', not '.' or '..')")
        experiment = cls(Path(storage or DEFAULT_STORAGE) / name)
        for path in (experiment.path.parent, experiment.path):
            if path.exists() and not path.is_dir():
                raise UserError(f"{path} exists and is not a directory: choose another --storage or --name")
        return experiment

    def result_path(self, cell_id: str) -> Path:
        return self.cells_dir / f"{cell_id}.json"

    def grid_path(self, cell_id: str) -> Path:
        return self.grids_dir / f"{cell_id}.png"

    def model_path(self, cell_id: str) -> Path:
        return self.models_dir / f"{cell_id}.pt"

    def examples_path(self, cell_id: str) -> Path:
        """Each example's R and D per split (rdsweep/uncertainty.py): what `compare` pairs two cells on."""
        return self.examples_dir / f"{cell_id}.npz"

    def checkpoint_path(self, cell_id: str) -> Path:
        return self.checkpoints_dir / f"{cell_id}.pt"

    def cell_lock_path(self, cell_id: str) -> Path:
        """Held by the trial training the cell (rdsweep/sweep/launch.py), so two never train one cell at once."""
        return self.path / "locks" / f"{cell_id}.lock"

    def progress_path(self, cell_id: str) -> Path:
        return self.progress_dir / f"{cell_id}.json"

    def launch_log_path(self, launch: str) -> Path:
        return self.path / f"{launch}.log"

    def progress(self) -> dict[str, dict]:
        """The progress record of every cell that has started a trial, by cell id."""
        return {path.stem: read_progress(path) for path in sorted(self.progress_dir.glob("*.json"))}

    def write_progress(self, record: dict) -> None:
        write_json_atomic(self.progress_path(record["cell_id"]), record)

    def last_launch(self) -> dict | None:
        """The latest launch's record (launch.json), or None before any launch recorded one."""
        return read_launch(self.launch_path) if self.launch_path.exists() else None

    def record_launch(self, record: dict) -> None:
        write_json_atomic(self.launch_path, record)

    def results(self) -> list[CellResult]:
        """Every cell result on disk, ordered by file name (cell id), so readers are deterministic."""
        return list(self.each_result())

    def each_result(self) -> Iterator[CellResult]:
        """results() one at a time, for a reader that needs only one in memory (collect, at 10,000 cells)."""
        return (read_result(path) for path in sorted(self.cells_dir.glob("*.json")))

    def status(self, cell_id: str) -> str | None:
        result = self.result(cell_id)
        return None if result is None else result.status

    def result(self, cell_id: str) -> CellResult | None:
        path = self.result_path(cell_id)
        return read_result(path) if path.exists() else None

    def write_result(self, result: CellResult) -> None:
        """Checked again as it is written: one changed after it was made (model_copy does not validate)
        cannot reach the ledger unchecked."""
        write_json_atomic(self.result_path(result.cell_id), cell_result(result.model_dump()).model_dump())

    def check_protocol(self, protocol: dict) -> None:
        """Refuse to mix budgets in one experiment: its points would not be comparable."""
        if not self.meta_path.exists():
            return
        recorded = read_record(self.meta_path)["protocol"]
        if recorded != protocol:
            changed = sorted(_diff(recorded, protocol))
            raise UserError(
                f"experiment {self.path} was run with a different {', '.join(changed)} "
                f"({_show(recorded, changed)}; the spec now says {_show(protocol, changed)}): "
                f"give this spec a new experiment name with --name NEW (nothing was changed)")

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One launch at a time per experiment, or two would train the same cells. The lock is the kernel's
        (flock on launch.lock): it dies with its process, so a killed launch leaves no stale lock behind.
        A second launch is a UserError naming the first.

        The lock is verified, not only taken (docs/reliability.md, "The lock"): the holder record
        (launch.lock.json) names the lock file it locked (its inode), and a launch refuses, changing nothing,
        when the file it locked is no longer the one at the path, or when the record's holder locked another
        file and may still run (someone deleted or replaced launch.lock under it). A lock file or record that
        cannot be used (a directory, unwritable, not a holder record) is a UserError naming it: never a
        launch without the lock, except on a filesystem without flock (a warning)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create experiment directory {self.path}: {e.strerror} "
                            "(choose another --storage)") from None
        held = self._acquire()   # (fd, the locked file's stat), or None: a filesystem without flock
        try:
            if held is not None:
                write_json_atomic(self.holder_path, self._holder_record(held[1]))
            yield
        finally:
            if held is not None:
                self._release(*held)

    def _acquire(self) -> tuple[int, os.stat_result] | None:
        record = self._read_holder()
        if record is not None and not os.path.lexists(self.lock_path):
            self._refuse_if_held_elsewhere(record, None)   # its lock file is gone: refused before creating one
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as e:
            why = ("it is a directory" if e.errno == errno.EISDIR else
                   "this user cannot open it for writing" if e.errno in (errno.EACCES, errno.EPERM) else
                   e.strerror or str(e))
            raise UserError(f"cannot use the experiment's lock file {self.lock_path}: {why}; a launch must lock "
                            "it (a regular file this user can write): fix or remove it while no launch of this "
                            "experiment runs (nothing was changed)") from None
        try:
            locked = os.fstat(fd)
            if not stat.S_ISREG(locked.st_mode):
                raise UserError(f"cannot use the experiment's lock file {self.lock_path}: it is not a regular "
                                "file; remove it while no launch of this experiment runs (nothing was changed)")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(f"experiment {self.path} is being launched by {self._holder()}: wait for it to end "
                                "(`rdsweep status`) or stop it first") from None
            except OSError as e:  # a filesystem without flock: say so, and go on unguarded
                print(f"rdsweep: warning: cannot lock {self.lock_path} ({e.strerror}); do not launch this "
                      "experiment twice at once", file=sys.stderr)
                os.close(fd)
                return None
            if not _same_file(locked, _stat(self.lock_path)):   # deleted or replaced between open and flock
                raise UserError(f"{self.lock_path} was deleted or replaced while this launch was locking it: "
                                "another process is changing the experiment's lock; launch again once it has "
                                "stopped (nothing was changed)")
            record = self._read_holder()   # again: under the lock, it cannot change any more
            if record is not None:
                self._refuse_if_held_elsewhere(record, locked)
        except BaseException:
            os.close(fd)   # the flock, if taken, goes with it
            raise
        return fd, locked

    def _holder_record(self, locked: os.stat_result) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join(sys.argv), "lock": {"dev": locked.st_dev, "ino": locked.st_ino}}

    def _read_holder(self) -> dict | None:
        """The holder record (launch.lock.json), None when there is none; a UserError naming it when it cannot
        be read or is not a holder record: whether a launch holds the experiment could not be told."""
        try:
            text = self.holder_path.read_text()
        except FileNotFoundError:
            return None
        except OSError as e:
            why = "it is a directory" if e.errno == errno.EISDIR else e.strerror or str(e)
            raise UserError(f"cannot read the launch lock's holder record {self.holder_path}: {why}; it must be "
                            "the file a launch writes: remove it while no launch of this experiment runs "
                            "(nothing was changed)") from None
        try:
            record = json.loads(text)
            record["pid"], record["host"] = int(record["pid"]), str(record["host"])
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UserError(f"{self.holder_path} is not a launch lock's holder record (pid, host, since, "
                            "command): remove it while no launch of this experiment runs (nothing was "
                            "changed)") from None
        return record

    def _refuse_if_held_elsewhere(self, record: dict, locked: os.stat_result | None) -> None:
        """We hold the flock on `locked` (None: there is no lock file): refuse if the record's holder locked
        another file and may still run, i.e. the lock was bypassed by deleting or replacing launch.lock. A
        holder known dead (on this host) left a stale record, which the new one replaces."""
        here = record["host"] == socket.gethostname()
        mine = None   # unknown: a record written by an earlier rdsweep names no lock file
        if isinstance(record.get("lock"), dict):   # st_dev differs between NFS clients: compared on one host only
            mine = locked is not None and record["lock"].get("ino") == locked.st_ino and (
                not here or record["lock"].get("dev") == locked.st_dev)
        alive = _alive(record["pid"]) if here else None
        if mine is True or alive is False or (mine is None and alive is None):
            return
        who = f"pid {record['pid']} on {record['host']} since {record.get('since')} ({record.get('command')})"
        if alive:
            raise UserError(f"experiment {self.path} is being launched by {who}, but its lock file "
                            f"{self.lock_path} was deleted or replaced: that launch still runs; wait for it "
                            "to end or stop it first (nothing was changed)")
        raise UserError(f"experiment {self.path}: its lock file {self.lock_path} was deleted or replaced after "
                        f"{who} took it, and from {socket.gethostname()} it cannot be told whether that launch "
                        f"still runs: if it has ended, remove {self.holder_path} and launch again (nothing was "
                        "changed)")

    def _release(self, fd: int, locked: os.stat_result) -> None:
        """Remove the holder record if it is still ours (never another launch's), then drop the flock."""
        try:
            try:
                record = json.loads(self.holder_path.read_text())
                if record == {**record, "pid": os.getpid(), "host": socket.gethostname(),
                              "lock": {"dev": locked.st_dev, "ino": locked.st_ino}}:
                    self.holder_path.unlink()
            except (OSError, ValueError, TypeError):
                pass
            if not _same_file(locked, _stat(self.lock_path)):
                print(f"rdsweep: warning: {self.lock_path} was deleted or replaced while this launch held it: "
                      "the experiment was not guarded against a second launch meanwhile (`rdsweep status`)",
                      file=sys.stderr)
        finally:
            os.close(fd)

    def _holder(self) -> str:
        try:
            holder = json.loads(self.holder_path.read_text())
            return f"pid {holder['pid']} on {holder['host']} since {holder['since']} ({holder['command']})"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    def record_protocol(self, protocol: dict, version: str) -> None:
        if not self.meta_path.exists():
            write_json_atomic(self.meta_path, {"protocol": protocol, "rdsweep_version": version})


@dataclass(frozen=True)
class PlannedCell:
    cell: Cell
    action: str     # "skip" (finished), "run" (new or failed before), "resume" (from a checkpoint),
                    # "continue" (unconverged, and the budget now allows more epochs)
    status: str | None   # what the ledger says now


def plan(experiment: Experiment, cells: list[Cell]) -> list[PlannedCell]:
    """What launching these cells in this experiment would do, cell by cell."""
    # One listing of each folder instead of a stat per cell and file: a spec of 10^5 cells on a network
    # filesystem would otherwise wait for 2·10^5 round trips.
    results, saved = _names(experiment.cells_dir), _names(experiment.checkpoints_dir)
    planned = []
    for cell in cells:
        cell_id = cell.cell_id
        result = experiment.result(cell_id) if f"{cell_id}.json" in results else None
        status = None if result is None else result.status
        checkpoint = f"{cell_id}.pt" in saved and experiment.checkpoint_path(cell_id).exists()
        if is_final(result, cell):
            action = "skip"
        elif status == "unconverged":  # the cap was raised
            action = "continue" if checkpoint else "run"
        elif checkpoint:
            action = "resume"
        else:
            action = "run"
        planned.append(PlannedCell(cell, action, status))
    return planned


def _names(directory: Path) -> frozenset[str]:
    """The names in a ledger folder; none when it does not exist yet."""
    try:
        return frozenset(os.listdir(directory))
    except FileNotFoundError:
        return frozenset()


def is_final(result: CellResult | None, cell: Cell) -> bool:
    """Whether a ledger result ends this cell for good: converged or diverged, or unconverged under a cap
    this cell does not raise. The plan skips such a cell, and a trial that finds one does not train."""
    if result is None:
        return False
    return result.status in FINISHED or (result.status == "unconverged" and cell.epochs <= result.cell["epochs"])


def _kind(st: os.stat_result) -> str:
    return ("a directory" if stat.S_ISDIR(st.st_mode) else "a file" if stat.S_ISREG(st.st_mode) else
            "a named pipe" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else
            "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a special file")


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _same_file(a: os.stat_result, b: os.stat_result | None) -> bool:
    return b is not None and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _alive(pid: int) -> bool:
    """Whether process `pid` of this host still runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:   # someone else's process: it exists
        pass
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def write_json_atomic(path: Path, obj) -> None:
    """Readers (collect, a relaunch, another node) see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, prefix + key + ".")
        elif va != vb:
            out.append(prefix + key)
    return out


def _show(protocol: dict, keys: list[str]) -> str:
    def get(key):
        value = protocol
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value
    return ", ".join(f"{k}={get(k)!r}" for k in keys)
