"""The launch's live view on its own, without Ray: the events a sweep's trials send, what a terminal shows
and what the launch log keeps. (The sweep drives it through Ray in test_sweep.py.)"""
import io

import pickle

from rich.console import Console

from rdsweep.cells import Cell
from rdsweep.sweep.ledger import Experiment, PlannedCell
from rdsweep.sweep.live import LaunchView

CELLS = [Cell(dataset="toy", family="toy", beta=b, epochs=10).validated() for b in (0.5, 1.0)]


def view(tmp_path, terminal: bool):
    experiment = Experiment(tmp_path / "exp")
    experiment.path.mkdir()
    console = Console(file=io.StringIO(), width=100, force_terminal=terminal, record=True)
    log = io.StringIO()
    todo = [PlannedCell(CELLS[0], "run", None), PlannedCell(CELLS[1], "resume", None)]
    return LaunchView(todo, experiment, console, log), console, log


def test_a_terminal_shows_the_running_cells_with_their_latest_epoch(tmp_path):
    live, console, log = view(tmp_path, terminal=True)
    first, second = (c.cell_id for c in CELLS)
    live.started(first)
    live.started(second)
    live.reported(first, {"epoch": 3, "rate": 1.234, "distortion": 2.5, "valid_objective": 3.75, "best_epoch": 2,
                          "wall_s": 0.4})
    console.print(live._view())
    screen = console.export_text()
    assert "0/2 cells" in screen and "2 running" in screen
    row = next(line for line in screen.splitlines() if "β=0.5" in line)
    assert row.split()[-6:] == ["3/10", "0s", "1.23", "2.50", "3.75", "2"]
    # in a terminal the live view is the display: events go to the log only
    assert "start" not in screen
    assert "epoch 3/10 toy β=0.5 seed=0: R 1.234, D 2.500, valid 3.750 (best epoch 2), 0.4s" in log.getvalue()
    assert f"start toy β=1 seed=0 (cell {second}, from its checkpoint)" in log.getvalue()
    # A blow-up is named where a reader would take the number for a loss: the row, its key and the log.
    assert "blew up" not in screen
    live.reported(first, {"epoch": 4, "rate": 3e14, "distortion": 2.5, "valid_objective": 3e14, "best_epoch": 2,
                          "blew_up": True, "wall_s": 0.4})
    console.print(live._view())
    screen = console.export_text()
    row = next(line for line in screen.splitlines() if "β=0.5" in line and "4/10" in line)
    assert row.split()[-3:] == ["300000000000000.00", "▲", "2"]
    assert "▲ the latest evaluation blew up: far above the best" in screen
    assert "valid 300000000000000.000 (best epoch 2; blew up: far above its best)" in log.getvalue()
    # An epoch without an evaluation (eval_every > 1): the row keeps the last one and its mark, the log does not.
    live.reported(first, {"epoch": 5, "rate": 2.0, "distortion": 2.5, "best_epoch": 2, "blew_up": False,
                          "wall_s": 0.4})
    console.print(live._view())
    row = next(line for line in console.export_text().splitlines() if "β=0.5" in line and "5/10" in line)
    assert row.split()[-3:] == ["300000000000000.00", "▲", "2"]
    assert log.getvalue().splitlines()[-1].endswith("epoch 5/10 toy β=0.5 seed=0: R 2.000, D 2.500, 0.4s")


def test_without_a_terminal_each_start_and_end_is_a_line_and_the_log_ends_with_what_is_left(tmp_path):
    live, console, log = view(tmp_path, terminal=False)
    first, second = (c.cell_id for c in CELLS)
    live.started(first)
    live.reported(first, {"epoch": 4, "rate": 1.0, "distortion": 2.0, "wall_s": 0.1, "best_epoch": 4})
    live.retrying(second, "RuntimeError: worker died")
    live.ended(first, "converged")
    live.ended(second, "failed", "RuntimeError: out of memory")
    live.close()
    printed = console.export_text()
    assert "start toy β=0.5 seed=0" in printed and "epoch 4/10 toy" not in printed   # epochs: the log only
    assert "[1/2] converged toy β=0.5 seed=0: at epoch 4/10 after 0s" in printed
    assert "retry toy β=1 seed=0 from its last checkpoint, after: RuntimeError: worker died" in printed
    assert "[2/2] failed toy β=1 seed=0: RuntimeError: out of memory" in printed
    assert live.ended_cells() == {first: "converged", second: "failed"}
    assert log.getvalue().splitlines()[-1].endswith(": 1 converged, 1 failed")


def test_an_interrupted_launch_logs_its_unfinished_cells_and_pickles_without_its_terminal(tmp_path):
    live, console, log = view(tmp_path, terminal=False)
    live.started(CELLS[0].cell_id)
    live.close()
    assert log.getvalue().splitlines()[-1].endswith(
        "no cell ended; 2 unfinished (stopped before they ended): run the same command again to resume them")
    # Tune pickles its callbacks (and this view with them) into its experiment state
    again = pickle.loads(pickle.dumps(live))
    assert again.state == live.state and not hasattr(again, "console") and not hasattr(again, "log")
