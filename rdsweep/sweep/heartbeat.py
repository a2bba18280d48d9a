"""A trial's progress record in the ledger (EXPERIMENT/progress/<cell_id>.json): what the launch's live view
and `rdsweep status` know of a running cell. Plain threads and files, no Ray and no torch: the trial
(rdsweep/sweep/launch.py) feeds it from the trainer's callbacks."""
from __future__ import annotations

import socket
import threading
import time

from rdsweep.cells import Cell
from rdsweep.sweep.ledger import Experiment
from rdsweep.sweep.status import HEARTBEAT_S
from rdsweep.training.stopping import evaluations


class TrialProgress:
    """A trial's progress record in the ledger (Experiment.progress_path), which the launch's view and
    `rdsweep status` read: written when training starts, after each epoch, and every HEARTBEAT_S seconds in
    between by a daemon thread (with the step of the epoch under way), so its age tells a live trial from an
    interrupted one, also through long epochs and evaluations; `finished_at` once the result is written,
    `stopped_at` if the trial raised before that."""

    def __init__(self, experiment: Experiment, cell: Cell, started: float, node: str | None = None):
        self.experiment, self.cell, self.started, self.node = experiment, cell, started, node   # node: Ray's id
        self.record: dict = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def begin(self, resume_state: dict | None) -> None:
        epoch = resume_state["epoch"] if resume_state else 0
        history = (resume_state or {}).get("history", [])
        last = (evaluations(history) or [None])[-1]
        valid, blew_up = (None, False) if last is None else (
            last["valid_objective"], last["epoch"] in resume_state["rule"].get("blowups", []))
        with self._lock:
            self.record = {
                "cell_id": self.cell.cell_id, "cell": self.cell.to_dict(), "host": socket.gethostname(),
                "node": self.node, "started_at": self.started, "finished_at": None, "resumed_from_epoch": epoch, "epoch": epoch,
                "step": 0, "steps": None, "first_step_at": None, "valid_objective": valid,
                "blew_up": blew_up,
                "best_epoch": resume_state["rule"]["best_epoch"] if resume_state else None, "epoch_wall_s": []}
        self._write()
        if self._thread.ident is None:  # begun again when a bad checkpoint restarts the cell
            self._thread.start()

    def step(self, step: int, steps: int) -> None:
        """The trainer's on_step, once per optimiser step: memory only, the heartbeat writes it. The time of
        the epoch's first step lets status time a family by the pace of its first, unfinished epoch."""
        with self._lock:
            self.record["step"], self.record["steps"] = step, steps
            if step == 1:
                self.record["first_step_at"] = time.time()

    def epoch_done(self, metrics: dict, best_epoch: int | None, blew_up: bool = False) -> None:
        with self._lock:
            self.record.update(epoch=metrics["epoch"], step=0, best_epoch=best_epoch)
            if "valid_objective" in metrics:   # an epoch without an evaluation keeps the last one's
                self.record.update(valid_objective=metrics["valid_objective"], blew_up=blew_up)
            self.record["epoch_wall_s"].append(metrics["wall_s"])
        self._write()

    def finish(self) -> None:
        with self._lock:
            self.record["finished_at"] = time.time()
        self._write()

    def _write(self) -> None:
        with self._lock:
            self.record["updated_at"] = time.time()
            self.experiment.write_progress(self.record)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._write()
            except OSError:  # a hiccup of a shared filesystem must not end the heartbeat: try again next beat
                continue

    def __enter__(self) -> "TrialProgress":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()
        if exc_type is not None and self.record and self.record.get("finished_at") is None:
            # the trial raised: say so at once, or status would show it running until its heartbeat went stale
            with self._lock:
                self.record["stopped_at"] = time.time()
            try:
                self._write()
            except OSError:
                pass   # the heartbeat's age still tells, a minute later
