"""A launch's live view and log lines: what `rdsweep launch` shows while its trials run.

Ray-free, like everything but sweep.py: the sweep's Tune callback hands it each trial's events by cell id
(started, reported an epoch, retrying, ended), and it renders them with rich and writes them to the
launch log. What it knows beyond those events it reads from the ledger (rdsweep/sweep/status.py), at most every
SNAPSHOT_S seconds.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import IO

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from rdsweep.sweep.ledger import Experiment, PlannedCell
from rdsweep.training.result import RESULT_STATUSES
from rdsweep.sweep.status import BLEW_UP_KEY, ExperimentStatus, cell_label, duration, eta_text, experiment_status

SNAPSHOT_S = 5.0      # the live view rereads the ledger (rdsweep/sweep/status.py) at most this often
LONG_EPOCH_S = 20.0   # a family's epochs at least this long (or not timed yet) show the step under way
WIDE = 120            # from this many columns, the live view also names each running cell's family


class LaunchView:
    """What a launch shows as it runs. In a terminal: a bar of this launch's cells done, with elapsed time and
    ETA (rdsweep/sweep/status.py's, from the ledger), and a row per running cell: its time, epoch of the cap, the
    step of a long epoch under way, latest R, D, valid objective and best epoch. Otherwise one line per
    start, retry and end of a cell. Every event, each epoch included, also goes to the launch log.

    Told of each trial's events by cell id (launch.py's Tune callback), so it runs and renders without Ray."""

    def __init__(self, todo: list[PlannedCell], experiment: Experiment, console: Console, log: IO[str]):
        self.cells = {p.cell.cell_id: p.cell for p in todo}
        self.actions = {p.cell.cell_id: p.action for p in todo}
        self.labels = {cell_id: cell_label(cell.to_dict()) for cell_id, cell in self.cells.items()}
        self.experiment = experiment
        self.console = console
        self.log = log
        self.state = {cid: "pending" for cid in self.cells}
        self.latest: dict[str, dict] = {}
        self.started_at: dict[str, float] = {}
        self.errors: dict[str, str] = {}
        self.began = time.time()
        self._snapshot: ExperimentStatus | None = None
        self._snapshot_at = 0.0

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks, this view with them, into the experiment state; the terminal and the
        # log are not part of it.
        return {k: v for k, v in self.__dict__.items() if k not in ("console", "log", "_snapshot")}

    def live(self) -> Live:
        return Live(console=self.console, get_renderable=self._view, refresh_per_second=2,
                    transient=not self.console.is_terminal)

    def started(self, cell_id: str) -> None:
        self.state[cell_id] = "running"
        self.started_at[cell_id] = time.time()
        how = {"resume": ", from its checkpoint", "continue": ", continuing to the raised cap"}.get(
            self.actions[cell_id], "")
        self._event(f"start {self.labels[cell_id]} (cell {cell_id}{how})")

    def retrying(self, cell_id: str, error: str) -> None:
        self.state[cell_id] = "retrying"
        self._event(f"retry {self.labels[cell_id]} from its last checkpoint, after: {error}")

    def reported(self, cell_id: str, result: dict) -> None:
        """An epoch's report (trainer metrics, with best_epoch)."""
        self.state[cell_id] = "running"
        valid = (f", valid {result['valid_objective']:.3f} (best epoch {result['best_epoch']}"
                 f"{'; blew up: far above its best' if result.get('blew_up') else ''})"
                 if "valid_objective" in result else "")
        self._event(f"epoch {result['epoch']}/{self.cells[cell_id].epochs} {self.labels[cell_id]}: R "
                    f"{result['rate']:.3f}, D {result['distortion']:.3f}{valid}, {result['wall_s']:.1f}s",
                    console=False)
        if "valid_objective" not in result:   # an epoch without an evaluation: the table keeps the last one
            last = self.latest.get(cell_id, {})
            result = {**result, **{k: last[k] for k in ("valid_objective", "blew_up") if k in last}}
        self.latest[cell_id] = result

    def ended(self, cell_id: str, state: str, error: str | None = None) -> None:
        """The cell's trial is over: with a result (its status) or failed (with the error's last line)."""
        self.state[cell_id] = state
        if error is not None:
            self.errors[cell_id] = error
        epoch = self.latest.get(cell_id, {}).get("epoch")
        took = duration(time.time() - self.started_at.get(cell_id, self.began))
        detail = self.errors.get(cell_id) or (
            f"at epoch {epoch}/{self.cells[cell_id].epochs} after {took}" if epoch else f"after {took}")
        self._event(f"[{self._done()}/{len(self.cells)}] {state} {self.labels[cell_id]}: {detail}; "
                    f"{self._eta(self._status(force=True))}")

    def ended_cells(self) -> dict[str, str]:
        """The cells that ended in this launch, with a result or failed: their states."""
        return {cid: state for cid, state in self.state.items() if state in (*RESULT_STATUSES, "failed")}

    def close(self) -> None:
        """The log's last line: what this launch ended, and what it leaves to the next one."""
        counts = Counter(self.state.values())
        ended = ", ".join(f"{counts[s]} {s}" for s in (*RESULT_STATUSES, "failed") if counts[s]) or "no cell ended"
        left = counts["pending"] + counts["running"] + counts["retrying"]
        self._event(f"end after {duration(time.time() - self.began)}: {ended}" + (
            f"; {left} unfinished (stopped before they ended): run the same command again to resume them"
            if left else ""), console=False)

    def _done(self) -> int:
        return sum(s in (*RESULT_STATUSES, "failed") for s in self.state.values())

    def _event(self, text: str, console: bool = True) -> None:
        """One line in the launch log and, when the output is not a terminal (CI, nohup), on the console."""
        now = time.localtime()
        self.log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S', now)} {text}\n")
        if console and not self.console.is_terminal:
            self.console.print(f"{time.strftime('%H:%M:%S', now)} {text}", highlight=False, markup=False,
                               soft_wrap=True)

    def _status(self, force: bool = False) -> ExperimentStatus | None:
        now = time.time()
        if force or now - self._snapshot_at >= SNAPSHOT_S:
            self._snapshot_at = now
            try:
                self._snapshot = experiment_status(self.experiment, now)
            except Exception:  # a damaged ledger file, or a bug in the view: the sweep itself must go on
                pass
        return self._snapshot

    def _eta(self, status: ExperimentStatus | None) -> str:
        return eta_text(status, running=True) if status else "ETA: after the first epoch"

    def _view(self) -> Group:
        status, now = self._status(), time.time()
        total, done = len(self.cells), self._done()
        head = Table.grid(expand=True, padding=(0, 1))
        head.add_column(no_wrap=True)
        head.add_column(ratio=1)
        head.add_column(no_wrap=True)
        head.add_row(f"{done}/{total} cells", ProgressBar(total=total, completed=done),
                     f"{duration(now - self.began)} elapsed")
        counts = Counter(self.state.values())
        states = ("running", "retrying", "pending", *RESULT_STATUSES, "failed")
        parts = [head, Text(", ".join(f"{counts[s]} {s}" for s in states if counts[s]) + f"; {self._eta(status)}")]
        rows = [cid for cid, s in self.state.items() if s in ("running", "retrying")]
        if rows:
            parts.append(self._table(rows, status, now))
        parts += [Text(f"failed {self.labels[cid]}: {error}", no_wrap=True, overflow="ellipsis")
                  for cid, error in list(self.errors.items())[-3:]]
        return Group(*parts)

    def _table(self, rows: list[str], status: ExperimentStatus | None, now: float) -> Table:
        ledger = {c.cell_id: c for c in status.cells} if status else {}
        families = status.families if status else {}
        steps = {}
        for cid in rows:
            c, timing = ledger.get(cid), families.get(self.cells[cid].family)
            if c is None or c.state != "running" or not c.steps:
                continue
            per_epoch = timing and timing.seconds_per_epoch
            long_epochs = per_epoch is None or per_epoch >= LONG_EPOCH_S
            if long_epochs and c.epoch == self.latest.get(cid, {}).get("epoch", c.epoch):  # else the step is stale
                steps[cid] = f"{c.step}/{c.steps}"
        columns = (["cell"] + (["family"] if self.console.width >= WIDE else []) + ["epoch"]
                   + (["step"] if steps else []) + ["time", "R", "D", "valid", "best"]
                   + (["state"] if any(self.state[cid] != "running" for cid in rows) else []))
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for column in columns:
            table.add_column(column, no_wrap=column in ("cell", "family"),
                             justify="left" if column in ("cell", "family", "state") else "right")
        for cid in rows:
            latest = self.latest.get(cid, {})
            epoch = latest.get("epoch", ledger[cid].epoch if cid in ledger else None)
            values = {
                "cell": self.labels[cid], "family": self.cells[cid].family,
                "epoch": f"{'' if epoch is None else epoch}/{self.cells[cid].epochs}", "step": steps.get(cid, ""),
                "time": duration(now - self.started_at.get(cid, now)), "R": _num(latest.get("rate")),
                "D": _num(latest.get("distortion")),
                "valid": _num(latest.get("valid_objective")) + (" ▲" if latest.get("blew_up") else ""),
                "best": str(latest.get("best_epoch") or ""), "state": self.state[cid]}
            table.add_row(*(values[column] for column in columns))
        if any(self.latest.get(cid, {}).get("blew_up") for cid in rows):
            table.caption = BLEW_UP_KEY
        return table


def _num(value) -> str:
    return "" if value is None else f"{value:.2f}"
