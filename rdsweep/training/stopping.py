"""The stopping rule: when a trial has converged, judged on the valid split's objective.

Every `eval_every` epochs the trainer hands the rule the valid objective (the cell's own loss, with its
evaluation noise held fixed). An evaluation *improves* when it beats the objective of the last improvement
by more than the rule's `tolerance`: `min_delta` nats, or `min_delta_relative` of that objective's size (at
least 1 nat), whichever is larger. The relative tolerance is the default of specs and `rdsweep train`
(DEFAULT_RELATIVE_DELTA): it scales with the data, as an absolute one cannot (0.05 nats is 0.05 % of a
digit model's objective and 0.4 % of lingauss's, where it stopped a β = 4 model at 61 % of its rate:
docs/convergence.md). After `patience` evaluations without an improvement the objective has plateaued:

- with the `plateau` schedule, the trainer restores the best state and divides the learning rate by
  `lr_divisor`, up to `lr_reductions` times; the next plateau after the last reduction stops the trial;
- with the other schedules, the first plateau stops the trial.

A stop by this rule is what `converged` means. Reaching the epoch budget first is `unconverged`.

An evaluation *blows up* when it is worse than the best so far by more than the best's own size (at least
1 nat): training lost more than it had gained, as when a rate explodes to 10¹⁵ nats and stays finite. Such
evaluations count towards the patience like any other (a plateau's restore of the best state is what
recovers from them), but a plateau that waited through one is not evidence of convergence: `calm` is false,
and the trainer ends such a stop as `diverged` (stop reason `blow-up`), not `converged`.

During a KL warm-up the objective changes every epoch, so the rule starts watching once the ramp has ended.
Pure bookkeeping: no torch, so the rule can be read and tested on its own. A rule is a function of the
objectives it was handed, so `replay` rebuilds it from a trial's history: how collect and curves find
blow-ups in any result, and how a checkpoint saved before the rule watched for them resumes.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

CONTINUE, REDUCE, STOP = "continue", "reduce", "stop"
# The tolerance when a spec or command gives none: 1e-4 of the objective's size, 0.0012 nats on lingauss at
# β = 4 (R within 1.3 % of the closed form, where 0.05 nats missed it by 39 %), 0.006–0.013 on mnist5k.
# Measured in docs/convergence.md.
DEFAULT_RELATIVE_DELTA = 1e-4


@dataclass
class StoppingRule:
    patience: int
    min_delta: float                # nats an improvement must exceed (see `tolerance`)
    lr_reductions: int = 0          # how many times a plateau divides the rate before one stops the trial
    best: float = math.inf          # the lowest valid objective seen: its state is the trial's point
    best_epoch: int = 0
    reference: float = math.inf     # the objective at the last improvement by more than min_delta
    waited: int = 0                 # evaluations since that improvement
    reductions: int = 0             # learning-rate reductions so far
    start_after: int = 0            # epochs the rule ignores: a warm-up's ramp
    blowups: list[int] = field(default_factory=list)  # epochs whose evaluation blew up
    waiting_since: int = 0          # the epoch of the last improvement or reduction: where a plateau begins
    min_delta_relative: float | None = None  # and this fraction of the reference's size; None: unused

    @classmethod
    def for_cell(cls, cell) -> "StoppingRule":
        """A fresh rule for a cell: a Cell, or the cell dict a result or a checkpoint holds."""
        get = cell.get if isinstance(cell, dict) else lambda name: getattr(cell, name)
        reductions = get("lr_reductions") if get("schedule") == "plateau" else 0
        return cls(patience=get("patience"), min_delta=get("min_delta"), lr_reductions=reductions,
                   start_after=get("warmup_epochs") or 0, min_delta_relative=get("min_delta_relative"))

    @property
    def tolerance(self) -> float:
        """The improvement over `reference` that counts, in nats: min_delta, or min_delta_relative of the
        reference's size (at least 1 nat, as for blow-ups: objectives near zero or negative), the larger."""
        if self.min_delta_relative is None or not math.isfinite(self.reference):
            return self.min_delta
        return max(self.min_delta, self.min_delta_relative * max(abs(self.reference), 1.0))

    def update(self, epoch: int, objective: float) -> str:
        """Record the valid objective after `epoch`; returns CONTINUE, REDUCE or STOP. When `best_epoch`
        becomes `epoch`, this epoch's state is the new best (the trainer keeps it), even for a gain below
        the tolerance; only gains above it (accumulated over evaluations, as in Keras) reset the patience.
        Evaluations within a warm-up's ramp (epoch ≤ start_after) are not judged at all."""
        if epoch <= self.start_after:
            return CONTINUE
        if blows_up(objective, self.best):
            self.blowups.append(epoch)
        if objective < self.best:
            self.best, self.best_epoch = objective, epoch
        if objective < self.reference - self.tolerance:
            self.reference, self.waited, self.waiting_since = objective, 0, epoch
            return CONTINUE
        self.waited += 1
        if self.waited < self.patience:
            return CONTINUE
        if self.reductions < self.lr_reductions:
            self.reductions += 1
            self.waited, self.waiting_since = 0, epoch   # the best state comes back: a fresh wait
            return REDUCE
        return STOP

    @property
    def calm(self) -> bool:
        """No blow-up since the plateau began, so a stop now means the objective settled."""
        return not self.blowups or self.blowups[-1] <= self.waiting_since

    def state(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> "StoppingRule":
        return cls(**state)


def blows_up(objective: float, best: float) -> bool:
    """Worse than the best so far by more than the best's own size, and by more than 1 nat (objectives near
    zero, or negative ones of continuous data). Measured on the 128 finished cells of docs/studies: one blew
    up (mnist5k -++ σ=20, epochs 16–20), and no other evaluation exceeded its best so far by more than 24 %
    of this margin."""
    return math.isfinite(best) and objective - best > max(abs(best), 1.0)


def replay(cell, history: list[dict]) -> list[StoppingRule]:
    """The rules of a trial as they stood after its history's last evaluation, one per stage (two-stage
    starts a new rule for its encoder; every other trial has one), none before its first evaluation. A rule
    is a function of the valid objectives it was handed, so any result or checkpoint rebuilds it exactly,
    also one written before the rule watched for blow-ups."""
    rules: list[StoppingRule] = []
    stage = None
    for h in history:
        objective = h.get("valid_objective")
        if objective is None or not math.isfinite(objective):   # a non-finite one ended the trial unjudged
            continue
        if not rules or h.get("stage") != stage:
            rules.append(StoppingRule.for_cell(cell))
            stage = h.get("stage")
        rules[-1].update(h["epoch"], objective)
    return rules


def blowups(cell, history: list[dict]) -> list[int]:
    """The epochs of a trial's history (CellResult.history) whose evaluation blew up, as its rules
    judged them."""
    return [epoch for rule in replay(cell, history) for epoch in rule.blowups]


def evaluations(history: list[dict]) -> list[dict]:
    """The entries of a history whose valid objective was evaluated (every eval_every-th, and the last)."""
    return [h for h in history if h.get("valid_objective") is not None]


def evaluated_epochs(history: list[dict]) -> list[int]:
    return [h["epoch"] for h in evaluations(history)]


def recovered(history: list[dict], blown: list[int]) -> bool:
    """Whether the trial's last evaluation was back within bounds after its blow-ups `blown` (a trial can
    reach its epoch cap mid-blow-up)."""
    evaluated = evaluated_epochs(history)
    return not evaluated or evaluated[-1] not in blown


def epoch_ranges(epochs: list[int], evaluated: list[int] | None = None) -> str:
    """[16, 17, 18, 19, 20, 31] → '16–20, 31': blow-ups come in runs, of consecutive evaluations (of the
    sorted `evaluated` epochs, every epoch when None: with eval_every 2, blow-ups at 4, 6, 8 are '4–8')."""
    following = dict(zip(evaluated, evaluated[1:])) if evaluated else {}
    runs: list[list[int]] = []
    for e in epochs:
        if runs and e == following.get(runs[-1][-1], runs[-1][-1] + 1):
            runs[-1].append(e)
        else:
            runs.append([e])
    return ", ".join(f"{r[0]}–{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)
