"""The stopping rule on its own: patience, min_delta (accumulated), learning-rate reductions, then a stop."""
from rdsweep.training.stopping import CONTINUE, REDUCE, STOP, StoppingRule, blowups, epoch_ranges, replay


def run(rule, values):
    return [rule.update(epoch, v) for epoch, v in enumerate(values, start=1)]


def test_patience_counts_evaluations_without_a_meaningful_improvement():
    rule = StoppingRule(patience=3, min_delta=0.1)
    # 10 -> 9 improves; 8.95 and 8.92 are new bests but within min_delta of 9; 9.5 is worse: a plateau
    assert run(rule, [10.0, 9.0, 8.95, 8.92, 9.5]) == [CONTINUE, CONTINUE, CONTINUE, CONTINUE, STOP]
    assert rule.best_epoch == 4 and rule.best == 8.92   # the reported state is the lowest seen


def test_small_gains_accumulate_into_an_improvement():
    rule = StoppingRule(patience=3, min_delta=0.1)
    # each step gains 0.06 < min_delta, but two steps gain 0.12 over the reference: the wait restarts
    assert run(rule, [10.0, 9.94, 9.88, 9.82, 9.76, 9.76, 9.76, 9.76]) == [CONTINUE] * 7 + [STOP]


def test_plateau_schedule_reduces_before_it_stops():
    rule = StoppingRule(patience=2, min_delta=0.0, lr_reductions=2)
    actions = run(rule, [5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0])
    assert actions == [CONTINUE, CONTINUE, REDUCE, CONTINUE, REDUCE, CONTINUE, STOP]
    assert rule.reductions == 2 and rule.best_epoch == 1


def test_state_round_trips():
    rule = StoppingRule(patience=2, min_delta=0.0, lr_reductions=1)
    run(rule, [3.0, 2.0, 2.5])
    again = StoppingRule.from_state(rule.state())
    assert again == rule and again.update(4, 2.6) == rule.update(4, 2.6) == REDUCE


def test_a_plateau_that_waited_through_a_blowup_is_not_calm():
    # the mnist5k -++ σ=20 episode in small: 95 → 10¹⁵ (finite), then back near the best but no better
    rule = StoppingRule(patience=3, min_delta=0.1)
    assert run(rule, [100.0, 95.0, 1e15, 96.0, 97.0]) == [CONTINUE] * 4 + [STOP]
    assert rule.blowups == [3] and not rule.calm and rule.best_epoch == 2
    quiet = StoppingRule(patience=3, min_delta=0.1)
    assert run(quiet, [100.0, 95.0, 96.0, 97.0, 96.5]) == [CONTINUE] * 4 + [STOP]
    assert quiet.blowups == [] and quiet.calm


def test_a_reduction_after_a_blowup_starts_a_calm_wait():
    # the plateau schedule restores the best state at the reduction: the wait after it is judged afresh
    rule = StoppingRule(patience=2, min_delta=0.0, lr_reductions=1)
    assert run(rule, [100.0, 95.0, 1e15, 1e16, 95.5, 95.2]) == [CONTINUE, CONTINUE, CONTINUE, REDUCE, CONTINUE, STOP]
    assert rule.blowups == [3, 4] and rule.calm
    again = StoppingRule(patience=2, min_delta=0.0, lr_reductions=1)
    assert run(again, [100.0, 95.0, 96.0, 96.0, 1e9, 95.5]) == [CONTINUE, CONTINUE, CONTINUE, REDUCE, CONTINUE, STOP]
    assert again.blowups == [5] and not again.calm


def test_a_blowup_is_judged_against_the_best_s_size_and_at_least_one_nat():
    def found(values):
        rule = StoppingRule(patience=9, min_delta=0.0)
        run(rule, values)
        return rule.blowups
    # near zero and below it (continuous data): 1 nat is the least loss that counts
    assert found([0.2, 1.1, 1.3]) == [3]
    assert found([-5.0, -6.0, -1.0, 0.5]) == [4]
    # a doubling of a positive objective is not yet one; a little more is
    assert found([50.0, 100.0, 100.1]) == [3]


def test_readers_find_the_blowups_the_rule_found():
    # a warm-up's ramp is not judged, and two-stage's second stage starts a new rule (a new best)
    values = [500.0, 3000.0, 90.0, 85.0, 400.0, 84.0, 2e6, 83.0]
    cell = {"schedule": "constant", "patience": 9, "min_delta": 0.0, "lr_reductions": 0, "warmup_epochs": 2}
    rule = StoppingRule.for_cell(cell)
    run(rule, values)
    history = [{"epoch": e, "valid_objective": v} for e, v in enumerate(values, start=1)]
    assert blowups(cell, history) == rule.blowups == [5, 7]
    assert replay(cell, history) == [rule]
    staged = [{**h, "stage": 1 if h["epoch"] <= 4 else 2} for h in history]
    # stage 2 starts at 400 (its first evaluation, no best yet): 2e6 blows up from 84, nothing else does
    assert blowups({**cell, "warmup_epochs": None}, staged) == [2, 7]
    assert epoch_ranges([16, 17, 18, 19, 20, 31, 33, 34]) == "16–20, 31, 33–34"
    # with eval_every = 2 the evaluations are every other epoch: consecutive ones still make a run
    assert epoch_ranges([4, 6, 8, 14], evaluated=list(range(2, 21, 2)) + [21]) == "4–8, 14"
    assert epoch_ranges([20, 21], evaluated=list(range(2, 21, 2)) + [21]) == "20–21"


def test_a_replayed_rule_sees_the_blowup_an_older_rule_did_not_record():
    # a rule saved before it watched for blow-ups (no blowups, no waiting_since) would stop this wait calm
    cell = {"schedule": "constant", "patience": 3, "min_delta": 0.1, "lr_reductions": 0, "warmup_epochs": None}
    history = [{"epoch": e, "valid_objective": v} for e, v in enumerate([100.0, 95.0, 1e15, 96.0], start=1)]
    old = StoppingRule.for_cell(cell)
    run(old, [h["valid_objective"] for h in history])
    old = StoppingRule.from_state({k: v for k, v in old.state().items() if k not in ("blowups", "waiting_since")})
    assert old.update(5, 97.0) == STOP and old.calm
    rebuilt = replay(cell, history)[-1]
    assert rebuilt.update(5, 97.0) == STOP and not rebuilt.calm



def test_a_relative_tolerance_scales_with_the_objective():
    # 1e-3 of the objective: 0.1 nats at 100, 0.01 at 10. Gains of 0.03 nats per evaluation are a plateau
    # on the first scale and progress on the second.
    def rule():
        return StoppingRule(patience=3, min_delta=0.0, min_delta_relative=1e-3)
    large, small = rule(), rule()
    assert run(large, [100.0, 99.97, 99.94, 99.91]) == [CONTINUE, CONTINUE, CONTINUE, STOP]
    assert large.tolerance == 1e-3 * 100.0 and large.best == 99.91
    assert run(small, [10.0, 9.97, 9.94, 9.91, 9.88]) == [CONTINUE] * 5 and small.waited == 0
    # near zero or below (continuous data) the size counts as at least 1 nat, as for blow-ups
    near_zero = rule()
    near_zero.update(1, -0.2)
    assert near_zero.tolerance == 1e-3
    # with both, the larger counts; before the first evaluation, min_delta alone
    both = StoppingRule(patience=3, min_delta=0.05, min_delta_relative=1e-4)
    assert both.tolerance == 0.05
    both.update(1, 1000.0)
    assert both.tolerance == 0.1


def test_a_relative_rule_is_rebuilt_from_its_cell_and_history():
    cell = {"schedule": "plateau", "patience": 2, "min_delta": 0.0, "min_delta_relative": 1e-3,
            "lr_reductions": 1, "warmup_epochs": None}
    values = [100.0, 99.95, 99.92, 99.5, 99.45, 99.44]
    rule = StoppingRule.for_cell(cell)
    assert run(rule, values) == [CONTINUE, CONTINUE, REDUCE, CONTINUE, CONTINUE, STOP]
    history = [{"epoch": e, "valid_objective": v} for e, v in enumerate(values, start=1)]
    assert replay(cell, history) == [rule] and StoppingRule.from_state(rule.state()) == rule
    # a cell written before the field existed has none: its rule is the absolute one it always was
    old = StoppingRule.for_cell({k: v for k, v in cell.items() if k != "min_delta_relative"})
    assert old.min_delta_relative is None and run(old, values) == [CONTINUE] * 6   # min_delta 0: every gain
