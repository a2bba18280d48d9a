"""What an experiment is doing, read from its ledger alone (rdsweep/sweep/ledger.py): no Ray and no torch, so
`rdsweep status` works from any shell that sees the storage, while a launch runs or after it ended. The
launcher's progress display reads the same snapshot for its ETA.

Every cell of the latest launch (launch.json) and every cell with a trace in the ledger is in one state:

    running       its trial's progress record was rewritten less than STALE_S ago (a live trial rewrites it
                  every HEARTBEAT_S seconds, within epochs and during evaluations too)
    converged, unconverged, diverged, failed     its result in cells/, when no trial of it is running
    resumable     started (a progress record or a checkpoint) but neither running nor finished: its launch
                  was interrupted; the next launch resumes it
    pending       in the latest launch's plan, never started

Before a launch has recorded anything (it writes experiment.json and launch.json once Ray is up), its lock record
(launch.lock.json) says a launch is `starting`. A last sign of life dated after `now` (beyond CLOCK_SLACK_S) is
shown as a clock that runs ahead (`clock_ahead_s`), not as "0s ago".

The ETA (`estimate`) schedules the work left on the launch's trial slots, each cell's work measured from its
own family's cells; docs/launch.md ("Watching a sweep") states the method and its error.
"""
from __future__ import annotations

import heapq
import json
import os
import socket
import statistics
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from rich.columns import Columns
from rich.console import Group
from rich.table import Table
from rich.text import Text

from rdsweep.cells import cell_knob
from rdsweep.errors import UserError
from rdsweep.models.families import FAMILIES
from rdsweep.sweep.ledger import Experiment
from rdsweep.training.result import CellResult

HEARTBEAT_S = 5.0     # how often a running trial rewrites its progress record
STALE_S = 60.0        # a record older than this belongs to a trial that no longer runs
CLOCK_SLACK_S = HEARTBEAT_S   # a record dated up to this after `now` was just written; further: a clock ahead
RESULT_STATES = ("converged", "unconverged", "diverged")
STATES = ("running", "resumable", "pending", *RESULT_STATES, "failed")
NEVER_LISTED = 12     # never-started cells named in the text output; --json lists all
BLEW_UP_KEY = "▲ the latest evaluation blew up: far above the best (docs/convergence.md)"
AHEAD_KEY = ("ahead: its last sign of life is dated after this machine's clock: its host's clock runs ahead, "
             "so whether it still runs cannot be told from its age; synchronise the clocks (NTP)")


@dataclass
class CellStatus:
    cell_id: str
    cell: dict                           # the cell's fields ({} when only a checkpoint says it exists)
    state: str
    action: str | None = None            # the latest launch's plan for it (run, resume, continue, skip)
    epoch: int | None = None             # epochs done (running, resumable: checkpointed so far)
    step: int | None = None              # running: optimiser steps done in the current epoch, of `steps`
    steps: int | None = None
    valid_objective: float | None = None   # the latest (running, resumable)
    blew_up: bool = False                # that evaluation blew up: far above the best (rdsweep/training/stopping.py)
    best_epoch: int | None = None
    pace_s: float | None = None          # running: seconds per epoch at the pace of the epoch under way
    started_at: float | None = None      # this trial's start
    updated_at: float | None = None      # its last sign of life: heartbeat, checkpoint or result written
    clock_ahead_s: float | None = None   # updated_at is this far after `now` (beyond CLOCK_SLACK_S): the writer's
                                         # clock runs ahead of this one's, and the record's age means nothing
    host: str | None = None
    node: str | None = None              # Ray's id of the node it trains on (rdsweep 0.6 on)
    error: str | None = None             # failed: the last line of its error

    @property
    def cap(self) -> int | None:
        return self.cell.get("epochs")

    @property
    def label(self) -> str:
        return cell_label(self.cell) if self.cell else self.cell_id[:8]

    def to_do(self) -> bool:
        """Whether the latest launch still has to train it (a failed cell waits for the next launch)."""
        if self.state in ("running", "resumable", "pending"):
            return self.action != "skip"
        return (self.state == "unconverged" and self.action in ("run", "continue")
                and None not in (self.epoch, self.cap) and self.epoch < self.cap)


@dataclass
class FamilyTiming:
    """What a family's own cells measured: the ETA never mixes a slow family's times with a fast one's."""
    family: str
    epoch_s: list[float] = field(default_factory=list)     # every timed epoch, its validation included
    latest_s: list[float] = field(default_factory=list)    # those timed by the latest launch's trials
    paces: list[float] = field(default_factory=list)       # running cells' pace in their unfinished epoch
    stopped_at: list[int] = field(default_factory=list)    # epochs run by each of its finished cells
    overhead_s: list[float] = field(default_factory=list)  # each finished trial's time outside its epochs

    @property
    def seconds_per_epoch(self) -> float | None:
        """The mean epoch timed by the latest launch (a study resumed on another machine, or with fewer
        trials beside it, runs at its new pace), else of any launch; before any, the running cells' pace."""
        timed = self.latest_s or self.epoch_s or self.paces
        return sum(timed) / len(timed) if timed else None

    @property
    def overhead(self) -> float | None:
        return sum(self.overhead_s) / len(self.overhead_s) if self.overhead_s else None

    def expected_epochs(self, done: int, cap: int) -> float:
        """Mean epochs-to-stop of the finished cells that got further than `done`; the cap if none did (an
        upper bound). The mean, not the median: the ETA adds up many cells' epochs."""
        further = [min(e, cap) for e in self.stopped_at if e > done]
        return sum(further) / len(further) if further else cap


@dataclass
class Estimate:
    remaining_s: float | None      # None: no epoch of any family has been timed yet
    slots: int                     # trials at once
    cells_left: int
    rough: list[str]               # families to train with no finished cell yet: their cells count at the
                                   # cap, and before their first epoch at the others' seconds per epoch
    unknown: int = 0               # cells left whose family is unknown: started by an rdsweep that kept no
                                   # progress records (only a checkpoint says they exist), so no ETA


@dataclass
class ExperimentStatus:
    experiment: Experiment
    now: float
    launch: dict | None            # launch.json without its cell list
    cells: list[CellStatus]
    families: dict[str, FamilyTiming]
    estimate: Estimate
    starting: dict | None = None   # a launch holds the lock but has recorded nothing yet (Ray is starting):
                                   # launch.lock.json (pid, host, since, command), and "alive" when known

    @property
    def running(self) -> bool:
        return any(c.state == "running" for c in self.cells)

    def counts(self) -> dict[str, int]:
        states = [c.state for c in self.cells]
        return {s: states.count(s) for s in STATES if s in states}

    def to_json(self) -> dict:
        e, launch = self.estimate, self.launch
        ends = self.now + e.remaining_s if self.running and e.remaining_s is not None else None
        return {
            "experiment": self.experiment.name, "path": str(self.experiment.path), "now": _iso(self.now),
            "starting": self.starting,
            "launch": launch and {**launch, "started_at": _iso(launch.get("started_at"))},
            "counts": self.counts(),
            "eta": {"remaining_s": e.remaining_s, "ends_at": _iso(ends), "slots": e.slots,
                    "cells_left": e.cells_left, "rough_families": e.rough},
            "families": [{"family": t.family, "paper_code": _code(t.family),
                          "seconds_per_epoch": t.seconds_per_epoch,
                          "epochs_timed": len(t.epoch_s), "finished_cells": len(t.stopped_at),
                          "mean_epochs_to_stop": statistics.mean(t.stopped_at) if t.stopped_at else None,
                          "overhead_s": t.overhead} for t in self.families.values()],
            "cells": [{**{k: v for k, v in asdict(c).items() if k != "cell"}, "label": c.label,
                       **{k: c.cell.get(k) for k in ("family", "objective", "beta", "target_rate", "seed")},
                       "epochs": c.cap, "started_at": _iso(c.started_at), "updated_at": _iso(c.updated_at)}
                      for c in self.cells],
        }


def experiment_status(experiment: Experiment, now: float | None = None) -> ExperimentStatus:
    """The state of every cell, each family's timing and the ETA, from the ledger as it is now."""
    now = time.time() if now is None else now
    if not experiment.path.is_dir():
        raise UserError(f"{experiment.path} is not a directory: give an experiment directory, "
                        "e.g. rdsweep-results/quick")
    experiment.check_layout(reads=("cells", "progress", "checkpoints"))   # a damaged ledger: one line, exit 2
    if not (experiment.meta_path.exists() or experiment.cells_dir.is_dir()):
        # A launch writes experiment.json and launch.json once Ray has started (some 20 s): before that, its
        # lock's record says who is launching it.
        if (holder := _holder(experiment)) is None and experiment.lock_path.exists():
            raise UserError(f"{experiment.path}: no launch has recorded anything in it: one took its launch.lock "
                            "and ended before it started any cell (e.g. Ray did not start); launch again")
        if holder is None:
            raise UserError(f"{experiment.path} is not an rdsweep experiment (no experiment.json, no cells/)")
        return ExperimentStatus(experiment, now, None, [], {}, Estimate(0.0, 1, 0, []), starting=holder)
    launch = experiment.last_launch()
    planned = {c["cell_id"]: c for c in launch["cells"]} if launch else {}
    results = {r.cell_id: r for r in experiment.results()}
    records = experiment.progress()
    checkpoints = {p.stem: p for p in experiment.checkpoints_dir.glob("*.pt")}
    ids = list(planned) + sorted((results.keys() | records.keys() | checkpoints.keys()) - planned.keys())
    since = (launch or {}).get("started_at")
    cells = [_cell_status(cid, planned.get(cid), results.get(cid), records.get(cid), checkpoints.get(cid),
                          experiment, now, since) for cid in ids]
    for c in cells:
        if c.updated_at is not None and c.updated_at - now > CLOCK_SLACK_S:
            c.clock_ahead_s = c.updated_at - now
    families = _timing(cells, results, records, since)
    slots = (launch or {}).get("slots") or 1
    holder = _holder(experiment)   # a new launch that has not recorded itself in launch.json yet
    if holder and (holder["alive"] is False or (launch or {}).get("pid") == holder["pid"]
                   and (launch or {}).get("host") == holder["host"]):
        holder = None
    return ExperimentStatus(experiment, now, {k: v for k, v in (launch or {}).items() if k != "cells"} or None,
                            cells, families, estimate(cells, families, slots), starting=holder)


def _cell_status(cell_id: str, planned: dict | None, result: CellResult | None, record: dict | None,
                 checkpoint: Path | None, experiment: Experiment, now: float, since: float | None) -> CellStatus:
    cell = (planned or {}).get("cell") or (result.cell if result else None) or (record or {}).get("cell") or {}
    status = CellStatus(cell_id, cell, "pending", action=(planned or {}).get("action"))
    live = (record is not None and record.get("finished_at") is None and record.get("stopped_at") is None
            and now - record.get("updated_at", 0) < STALE_S)
    retried = (result is not None and result.status == "failed" and since is not None
               and (planned or {}).get("action") in ("run", "resume")
               and (_mtime(experiment.result_path(cell_id)) or since) < since)  # failed before, queued again
    if result is not None and not live and not retried:
        status.state, status.epoch, status.best_epoch = result.status, result.epochs, result.best_epoch
        status.updated_at = _mtime(experiment.result_path(cell_id))
        if result.status == "failed":
            status.error = ((result.error or "").strip().splitlines() or [None])[-1]
        return status
    if record is not None:
        status.state = "running" if live else "resumable"
        status.epoch, status.valid_objective = record.get("epoch"), record.get("valid_objective")
        status.blew_up = bool(record.get("blew_up"))
        status.best_epoch, status.started_at = record.get("best_epoch"), record.get("started_at")
        status.updated_at, status.host, status.node = record.get("updated_at"), record.get("host"), record.get("node")
        if live:
            status.step, status.steps = record.get("step"), record.get("steps")
            if status.step and status.step > 1 and record.get("first_step_at"):
                since_first_step = record["updated_at"] - record["first_step_at"]
                status.pace_s = since_first_step * status.steps / (status.step - 1)
    elif checkpoint is not None:  # no progress record: a trial started by an rdsweep older than this module
        status.state, status.updated_at = "resumable", _mtime(checkpoint)
    return status


def _holder(experiment: Experiment) -> dict | None:
    """Who holds the experiment's launch lock (launch.lock.json), with "alive": whether that process still
    runs, where it runs on this host (None elsewhere). None when no launch holds it."""
    try:
        holder = json.loads(experiment.holder_path.read_text())
        pid, host = int(holder["pid"]), str(holder["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    alive = None
    if host == socket.gethostname():
        try:
            os.kill(pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        except OSError:   # someone else's process: it exists
            alive = True
        try:   # a killed launcher its parent has not reaped yet (a zombie) runs no more
            alive = alive and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            pass
    return {"pid": pid, "host": host, "since": holder.get("since"), "command": holder.get("command"),
            "alive": alive}


def _timing(cells: list[CellStatus], results: dict[str, CellResult], records: dict,
            since: float | None) -> dict[str, FamilyTiming]:
    """Each family's measured epoch times, epochs-to-stop and per-trial overhead. A finished cell's epochs
    come from its result's history; a started one's from its progress record (this trial's epochs only),
    which also says whether the latest launch (started at `since`) timed them."""
    families: dict[str, FamilyTiming] = {}
    for c in cells:
        if "family" not in c.cell:
            continue
        timing = families.setdefault(c.cell["family"], FamilyTiming(c.cell["family"]))
        record = records.get(c.cell_id) or {}
        if c.state in RESULT_STATES:
            timing.epoch_s += [h["wall_s"] for h in results[c.cell_id].history]
            timing.stopped_at.append(c.epoch)
            if record.get("finished_at") is not None and record.get("started_at") is not None:
                timing.overhead_s.append(max(0.0, record["finished_at"] - record["started_at"]
                                             - sum(record.get("epoch_wall_s", []))))
        else:
            timing.epoch_s += record.get("epoch_wall_s", [])
        if since is not None and (record.get("started_at") or 0) >= since:
            timing.latest_s += record.get("epoch_wall_s", [])
        if c.pace_s is not None:
            timing.paces.append(c.pace_s)
    return families


def estimate(cells: list[CellStatus], families: dict[str, FamilyTiming], slots: int) -> Estimate:
    """Time left for the cells still to train, on `slots` trials at once (more if more are running).

    A cell's work is (expected epochs − epochs done) × its family's seconds per epoch + its family's time
    outside epochs (trial setup, final evaluation); the part of the current epoch a running cell has done
    is subtracted. Expected epochs: FamilyTiming.expected_epochs. Running cells hold their slots until their
    expected end; the others follow in launch order, each on the slot that frees first. A family with no
    finished cell is `rough`: its cells count at the cap; until one of its epochs is timed, its seconds per
    epoch are the pace of its running cells' first epoch (FamilyTiming.seconds_per_epoch), or before any step
    of it the mean of the timed families."""
    todo = [c for c in cells if c.to_do()]
    unknown = sum(not c.cell for c in todo)
    measured = [t.seconds_per_epoch for t in families.values() if t.seconds_per_epoch is not None]
    overheads = [t.overhead for t in families.values() if t.overhead is not None]
    rough = sorted({c.cell["family"] for c in todo if c.cell} - {f for f, t in families.items() if t.stopped_at})
    if unknown or (todo and not measured):
        return Estimate(None, slots, len(todo), rough, unknown)
    running, queued = [], []
    for c in todo:
        timing = families.get(c.cell["family"]) or FamilyTiming(c.cell["family"])
        per_epoch = timing.seconds_per_epoch or sum(measured) / len(measured)
        overhead = timing.overhead if timing.overhead is not None else (
            sum(overheads) / len(overheads) if overheads else 0.0)
        done = c.epoch or 0
        partial = c.step / c.steps if c.state == "running" and c.step and c.steps else 0.0
        seconds = max(timing.expected_epochs(done, c.cap) - done - partial, 0.0) * per_epoch + overhead
        (running if c.state == "running" else queued).append(seconds)
    slots = max(slots, len(running), 1)
    free_at = running + [0.0] * (slots - len(running))
    heapq.heapify(free_at)
    for seconds in queued:
        heapq.heappush(free_at, heapq.heappop(free_at) + seconds)
    return Estimate(max(free_at) if todo else 0.0, slots, len(todo), rough)


def cell_label(cell: dict) -> str:
    """Short enough for an 80-column row, and still says which cell: paper code (or the family's name,
    for the synthetic-data models), β or σ, seed."""
    setting = cell_knob(cell)
    return f"{_code(cell['family']) or cell['family']} {setting} seed={cell['seed']}"


def eta_text(status: ExperimentStatus, running: bool | None = None) -> str:
    """The ETA in words; `running` (default: whether a cell runs now) says whether a launch is under way."""
    e = status.estimate
    if e.cells_left == 0:
        return "nothing left to train"
    if e.unknown:
        return f"no ETA: {e.unknown} cell(s) started by an older rdsweep (no progress record)"
    if e.remaining_s is None:
        return "ETA: after the first epoch"
    rough = f" (rough: no {', '.join(_code(f) or f for f in e.rough)} cell finished yet)" if e.rough else ""
    if status.launch is None:  # launched by an rdsweep that kept no launch.json: unstarted cells are unknown
        rough += " (cells started so far only: no launch record lists the others)"
    if status.running if running is None else running:
        ends = clock(status.now + e.remaining_s, status.now)
        return f"about {duration(e.remaining_s)} left, ends ~{ends}{rough}"
    return (f"not running: about {duration(e.remaining_s)} of training left for {e.cells_left} cell(s) at "
            f"{e.slots} trial(s) at once{rough}")


def starting_text(holder: dict) -> str:
    """A launch that holds the experiment's lock and has not recorded its plan yet (Ray starts first)."""
    who = f"pid {holder['pid']} on {holder['host']} since {holder['since']} ({holder['command']})"
    if holder["alive"] is False:
        return (f"no launch running: the launch by {who} ended before it recorded its cells (its lock record is "
                "left over); nothing of it was trained: launch again")
    elsewhere = "" if holder["alive"] else "; if that launch was stopped meanwhile, nothing of it was trained"
    return (f"starting: a launch by {who} holds the experiment and is starting Ray; its cells are listed once "
            f"it has (some 20 s){elsewhere}")


def render(status: ExperimentStatus, wide: bool) -> Group:
    """`rdsweep status` for one experiment: summary lines, the running, resumable and failed cells, the cells
    never started, each family's timing. `wide` (a terminal of 120 columns or more) adds family names."""
    now, launch = status.now, status.launch
    parts = [Text(f"{status.experiment.name}  {status.experiment.path}", style="bold")]
    if status.starting:
        parts.append(Text(starting_text(status.starting)))
        if not status.cells and not launch:
            return Group(*parts)
    if launch:
        parts.append(Text(f"latest launch: {launch['name']} at {clock(launch['started_at'], now)} "
                          f"({ago(launch['started_at'], now)}), {launch['slots']} trial(s) at once"))
    parts.append(Text(f"{len(status.cells)} cells: " + ", ".join(
        f"{n} {'never started' if s == 'pending' else s}" for s, n in status.counts().items())))
    parts.append(Text(eta_text(status)))
    shown = [c for c in status.cells if c.state in ("running", "resumable", "failed")]
    if shown:
        table = Table(box=None, pad_edge=False)
        columns = ["cell", "family"] if wide else ["cell"]
        nodes = len({c.node for c in shown if c.state == "running"}) > 1   # a cluster: where each one trains
        for column in columns + ["state", "epoch", "step", "started", "last sign", "valid", "best"] + ["node"] * nodes:
            table.add_column(column, no_wrap=column in ("cell", "family"),
                             justify="right" if column in ("epoch", "step", "valid", "best") else "left")
        for c in shown:
            table.add_row(c.label, *([c.cell.get("family", "")] if wide else []), c.state,
                          "?" if c.epoch is None else f"{c.epoch}/{c.cap}",
                          f"{c.step}/{c.steps}" if c.steps else "",
                          clock(c.started_at, now) if c.started_at else "",
                          ago(c.updated_at, now) if c.updated_at else "",
                          ("" if c.valid_objective is None else f"{c.valid_objective:.2f}") + (" ▲" if c.blew_up else ""),
                          str(c.best_epoch or ""), *([(c.node or "")[:8]] if nodes else []))
        parts += [Text(""), table]
        if any(c.blew_up for c in shown):
            parts.append(Text(BLEW_UP_KEY))
        if any(c.clock_ahead_s for c in shown):
            parts.append(Text(AHEAD_KEY))
    for c in status.cells:
        if c.state == "failed":
            parts.append(Text(f"failed {c.label}: {c.error}"))
    never = [c.label for c in status.cells if c.state == "pending"]
    if never:  # in columns, so that no label breaks across lines
        more = [f"and {len(never) - NEVER_LISTED} more"] if len(never) > NEVER_LISTED else []
        parts += [Text("never started:"), Columns(never[:NEVER_LISTED] + more, padding=(0, 3))]
    if status.families:
        parts += [Text(""), _family_table(status, wide)]
    return Group(*parts)


def _family_table(status: ExperimentStatus, wide: bool) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("family", "cells", "finished", "left", "s/epoch", "epochs to stop", "per cell"):
        table.add_column(column, no_wrap=column == "family", justify="left" if column == "family" else "right")
    for name, t in status.families.items():
        members = [c for c in status.cells if c.cell.get("family") == name]
        cap = max((c.cap for c in members if c.cap), default=None)
        stop = statistics.mean(t.stopped_at) if t.stopped_at else None
        per_cell = t.seconds_per_epoch and t.seconds_per_epoch * (stop or cap or 0) + (t.overhead or 0.0)
        table.add_row(f"{_code(name)} {name}" if wide and _code(name) else (_code(name) or name),
                      str(len(members)), str(sum(c.state in (*RESULT_STATES, "failed") for c in members)),
                      str(sum(c.to_do() for c in members)),
                      "" if t.seconds_per_epoch is None else f"{t.seconds_per_epoch:.2f}",
                      f"{'?' if stop is None else f'{stop:.0f}'} of {cap}",
                      "" if per_cell is None else duration(per_cell))
    return table


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600:02d}h"


def ago(t: float, now: float) -> str:
    """How long before `now` a time was: "5s ago"; a time after it (beyond CLOCK_SLACK_S, a clock that runs
    ahead of this one) says so, "ahead 5m 00s", rather than reading as just now."""
    return f"ahead {duration(t - now)}" if t - now > CLOCK_SLACK_S else f"{duration(now - t)} ago"


def clock(t: float, now: float) -> str:
    """A time of day, with the date when it is not today."""
    when = datetime.fromtimestamp(t)
    return when.strftime("%H:%M" if when.date() == datetime.fromtimestamp(now).date() else "%a %d %b %H:%M")


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")


def _code(family: str) -> str | None:
    return FAMILIES[family].code if family in FAMILIES else None


def _mtime(path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:   # removed between listing and reading (a cell that just converged)
        return None
