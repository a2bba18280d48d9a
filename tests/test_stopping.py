"""The stopping rule on its own: patience, min_delta (accumulated), learning-rate reductions, then a stop."""
from rdsweep.stopping import CONTINUE, REDUCE, STOP, StoppingRule


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
