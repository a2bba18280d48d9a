"""The stopping rule: when a trial has converged, judged on the valid split's objective.

Every `eval_every` epochs the trainer hands the rule the valid objective (the cell's own loss, with its
evaluation noise held fixed). An evaluation *improves* when it beats the best so far by more than
`min_delta` nats. After `patience` evaluations without an improvement the objective has plateaued:

- with the `plateau` schedule, the trainer restores the best state and divides the learning rate by
  `lr_divisor`, up to `lr_reductions` times; the next plateau after the last reduction stops the trial;
- with the other schedules, the first plateau stops the trial.

A stop by this rule is what `converged` means. Reaching the epoch budget first is `unconverged`.
During a KL warm-up the objective changes every epoch, so the rule starts watching once the ramp has ended.
Pure bookkeeping: no torch, so the rule can be read and tested on its own.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

CONTINUE, REDUCE, STOP = "continue", "reduce", "stop"


@dataclass
class StoppingRule:
    patience: int
    min_delta: float
    lr_reductions: int = 0          # how many times a plateau divides the rate before one stops the trial
    best: float = math.inf          # the lowest valid objective seen: its state is the trial's point
    best_epoch: int = 0
    reference: float = math.inf     # the objective at the last improvement by more than min_delta
    waited: int = 0                 # evaluations since that improvement
    reductions: int = 0             # learning-rate reductions so far
    start_after: int = 0            # epochs the rule ignores: a warm-up's ramp

    @classmethod
    def for_cell(cls, cell) -> "StoppingRule":
        reductions = cell.lr_reductions if cell.schedule == "plateau" else 0
        return cls(patience=cell.patience, min_delta=cell.min_delta, lr_reductions=reductions,
                   start_after=cell.warmup_epochs or 0)

    def update(self, epoch: int, objective: float) -> str:
        """Record the valid objective after `epoch`; returns CONTINUE, REDUCE or STOP. When `best_epoch`
        becomes `epoch`, this epoch's state is the new best (the trainer keeps it), even for a gain below
        min_delta; only gains above min_delta (accumulated over evaluations, as in Keras) reset the patience.
        Evaluations within a warm-up's ramp (epoch ≤ start_after) are not judged at all."""
        if epoch <= self.start_after:
            return CONTINUE
        if objective < self.best:
            self.best, self.best_epoch = objective, epoch
        if objective < self.reference - self.min_delta:
            self.reference, self.waited = objective, 0
            return CONTINUE
        self.waited += 1
        if self.waited < self.patience:
            return CONTINUE
        if self.reductions < self.lr_reductions:
            self.reductions += 1
            self.waited = 0
            return REDUCE
        return STOP

    def state(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> "StoppingRule":
        return cls(**state)
