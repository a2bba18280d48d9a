"""Learning curves from a synthetic ledger (no training, no Ray) and the regime grid composition."""
import json
import math

import matplotlib
import matplotlib.image as mpimg
import pandas as pd
import pytest

from rdsweep.analysis.curves import curves, plot_curves, summary
from rdsweep.analysis.grids import compose_regime_grids
from rdsweep.cells import Cell
from rdsweep.errors import UserError

matplotlib.use("Agg")


def _history(objectives, evaluated=None):
    """Per-epoch dicts; the valid numbers only on evaluated epochs (all by default)."""
    out = []
    for epoch, value in enumerate(objectives, start=1):
        h = {"epoch": epoch, "loss": value + 1, "rate": 2.0, "distortion": value - 1, "lr": 1e-3 / epoch,
             "wall_s": 0.5}
        if evaluated is None or epoch in evaluated:
            h.update(valid_objective=value, valid_rate=value / 10, valid_distortion=value - value / 10)
        out.append(h)
    return out


_IDS: dict[str, str] = {}


def ID(name: str) -> str:
    """The cell id of the cell `_cell` made under this readable test name (its real id: a result's cell_id
    must be its cell's hash)."""
    return _IDS[name]


def _cell(name, family, status, *, beta=None, target_rate=None, seed=0, best_epoch=None, history=None,
          stop_reason="plateau", epochs=10):
    objective = "beta" if beta is not None else "target-rate"
    cell = {"family": family, "objective": objective, "beta": beta, "target_rate": target_rate, "seed": seed,
            "epochs": epochs}
    _IDS[name] = Cell.from_dict(cell).cell_id
    result = {"cell": cell, "cell_id": ID(name), "status": status, "best_epoch": best_epoch, "rdsweep_version": "0.2.0",
              "epochs": len(history or [])}
    if status == "failed":
        result["error"] = "RuntimeError: out of memory"
    else:
        result["stop_reason"] = stop_reason
        result["splits"] = {s: {"rate": 1.0, "distortion": 90.0, "elbo": -91.0} for s in ("train", "valid", "test")}
    if history is not None:
        result["history"] = history
    return result


def _ledger(root, name="exp", results=None):
    cells = root / name / "cells"
    cells.mkdir(parents=True)
    for result in results:
        (cells / f"{result['cell_id']}.json").write_text(json.dumps(result))
    return root / name


@pytest.fixture
def experiment(tmp_path):
    return _ledger(tmp_path, results=[
        # converged at epoch 3, evaluated every other epoch after the first two
        _cell("a-beta0.3", "gauss-deconv-normal", "converged", beta=0.3, best_epoch=3,
              history=_history([200.0, 120.0, 100.0, 101.0, 100.5], evaluated={1, 2, 3, 5})),
        _cell("b-beta1", "gauss-deconv-normal", "unconverged", beta=1.0, best_epoch=4, stop_reason="max epochs",
              history=_history([300.0, 150.0, 140.0, 130.0]), epochs=4),
        _cell("c-sigma5", "gauss-deconv-normal", "converged", target_rate=5.0, best_epoch=2,
              history=_history([250.0, 110.0, 111.0])),
        _cell("d-failed", "iaf-pixelcnn-vamp", "failed", beta=0.3),
        _cell("e-vamp", "iaf-pixelcnn-vamp", "converged", beta=0.3, seed=1, best_epoch=2,
              history=_history([90.0, 80.0, 81.0])),
    ])


def test_curves_has_one_row_per_evaluated_epoch_with_the_numbers_written(experiment):
    frame = curves([experiment])
    a = frame[frame["cell_id"] == ID("a-beta0.3")]
    assert a["epoch"].tolist() == [1, 2, 3, 5]                  # epoch 4 was not evaluated
    assert a["valid_objective"].tolist() == [200.0, 120.0, 100.0, 100.5]
    assert a["valid_rate"].tolist() == pytest.approx([20.0, 12.0, 10.0, 10.05])
    assert a["lr"].tolist() == pytest.approx([1e-3, 5e-4, 1e-3 / 3, 2e-4])
    assert set(a["knob"]) == {"β=0.3"} and set(a["experiment"]) == {"exp"}
    c = frame[frame["cell_id"] == ID("c-sigma5")]
    assert set(c["knob"]) == {"σ=5"} and c["target_rate"].iloc[0] == 5.0 and c["valid_distortion"].iloc[1] == 99.0
    # the failed cell keeps one row without an epoch, so summaries still count it
    failed = frame[frame["cell_id"] == ID("d-failed")]
    assert len(failed) == 1 and failed["epoch"].isna().all() and failed["valid_objective"].isna().all()
    assert len(frame) == 4 + 4 + 3 + 1 + 3
    # family order as rdsweep lists families; large β (low rate) before small β, then σ
    assert list(dict.fromkeys(frame["cell_id"])) == [ID(n) for n in ("b-beta1", "a-beta0.3", "c-sigma5", "d-failed", "e-vamp")]


def test_summary_has_one_row_per_cell_with_status_and_best_epoch(experiment):
    table = summary(curves([experiment])).set_index("cell_id")
    assert len(table) == 5
    assert table.loc[ID("a-beta0.3"), "status"] == "converged" and table.loc[ID("a-beta0.3"), "best_epoch"] == 3
    assert table.loc[ID("a-beta0.3"), "best_valid_objective"] == 100.0
    assert table.loc[ID("a-beta0.3"), "last_valid_objective"] == 100.5
    assert table.loc[ID("a-beta0.3"), "epochs_run"] == 5 and table.loc[ID("a-beta0.3"), "stop_reason"] == "plateau"
    b = table.loc[ID("b-beta1")]
    assert b["status"] == "unconverged" and b["best_epoch"] == 4 and b["stop_reason"] == "max epochs"
    assert b["epochs_run"] == b["epoch_cap"] == 4 and b["best_valid_objective"] == b["last_valid_objective"] == 130.0
    failed = table.loc[ID("d-failed")]
    assert failed["status"] == "failed" and failed["epochs_run"] == 0
    assert pd.isna(failed["best_epoch"])
    assert math.isnan(failed["best_valid_objective"]) and "out of memory" in failed["stop_reason"]


def test_plot_curves_writes_a_png_with_a_panel_per_family(experiment, tmp_path):
    frame = curves([experiment])
    path = plot_curves(frame, tmp_path / "curves.png")
    assert path.stat().st_size > 0
    image = mpimg.imread(path)
    assert image.shape[1] > 400 and image.shape[0] > 200      # two family panels side by side
    assert image.shape[1] > image.shape[0]


def test_plot_curves_wraps_families_into_rows_of_four(tmp_path):
    from rdsweep.models.families import IMAGE_FAMILIES

    families = [f.name for f in IMAGE_FAMILIES[:5]]
    root = _ledger(tmp_path, results=[
        _cell(f"{i}", name, "converged", beta=1.0, best_epoch=2, history=_history([50.0, 40.0, 41.0]))
        for i, name in enumerate(families)])
    one_row = mpimg.imread(plot_curves(curves([root])[lambda f: f["family"].isin(families[:4])],
                                       tmp_path / "four.png"))
    two_rows = mpimg.imread(plot_curves(curves([root]), tmp_path / "five.png"))
    assert two_rows.shape[0] > 1.5 * one_row.shape[0] and two_rows.shape[1] == one_row.shape[1]


def test_curves_keeps_experiments_in_the_order_given(tmp_path):
    cell = _cell("x", "gauss-deconv-normal", "converged", beta=1.0, best_epoch=2, history=_history([9.0, 8.0]))
    first, second = _ledger(tmp_path, "zeta", [cell]), _ledger(tmp_path, "alpha", [cell])
    frame = curves([first, second])
    assert list(dict.fromkeys(frame["experiment"])) == ["zeta", "alpha"] and len(summary(frame)) == 2
    assert mpimg.imread(plot_curves(frame, tmp_path / "both.png")).shape[1] > 400


def test_curves_refuses_empty_or_unevaluated_experiments(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no cell results"):
        curves([tmp_path / "empty"])
    with pytest.raises(UserError, match="not a directory"):
        curves([tmp_path / "missing"])
    only_failed = _ledger(tmp_path, "failed", [_cell("x", "gauss-deconv-normal", "failed", beta=1.0)])
    with pytest.raises(UserError, match="no cell has evaluated"):
        curves([only_failed])
    (only_failed / "cells" / "y.json").write_text("{not json")
    with pytest.raises(UserError):
        curves([only_failed])


def _fake_grid(path, n=8):
    """A stand-in for rdsweep.training.evaluate.save_image_grids: three rows of n 28×28 images."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(3, n, figsize=(n, 3.3))
    rng = np.random.default_rng(0)
    for i, label in enumerate(("data", "reconstruction", "sample")):
        for j in range(n):
            axes[i, j].imshow(rng.random((28, 28)) > 0.7, cmap="gray_r", vmin=0, vmax=1)
            axes[i, j].set_xticks([]), axes[i, j].set_yticks([])
        axes[i, 0].set_ylabel(label, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def test_compose_regime_grids_stacks_one_band_per_regime(tmp_path):
    png = _fake_grid(tmp_path / "cell.png")
    regimes = ["auto-decoder", "semantic", "syntactic", "auto-encoder"]
    rows = [{"regime": r, "label": f"gauss-deconv-normal (---) β={b}", "png": png}
            for r, b in zip(regimes, (1.1, 1.0, 0.15, 0.1))]
    grid = mpimg.imread(png)
    heights = []
    for k in (1, 2, 4):
        out = compose_regime_grids(rows[:k], tmp_path / f"regimes{k}.png", title="mnist5k: four regimes")
        image = mpimg.imread(out)
        assert image.shape[1] >= grid.shape[1]
        heights.append(image.shape[0])
    assert heights[0] > grid.shape[0]
    assert heights[0] < heights[1] < heights[2]
    assert heights[2] - heights[1] == 2 * (heights[1] - heights[0])     # every band the same height


def test_a_long_title_or_label_is_not_cut_off(tmp_path):
    # the mnist5k study's grids cut both: the figure was as wide as its images only
    png = _fake_grid(tmp_path / "cell.png")
    label = "gauss-pixelcnn-normal (-+-) β=1 W=10: R = 1.6, D = 90.1, −ELBO = 91.7 nats" * 2
    for title, rows in (("x" * 200, [{"regime": "semantic", "label": "short", "png": png}]),
                        (None, [{"regime": "auto-decoder", "label": label, "png": png}])):
        image = mpimg.imread(compose_regime_grids(rows, tmp_path / "long.png", title=title))
        ink = (image[..., :3] < 0.5).any(axis=(0, 2))         # columns with any dark pixel
        assert not ink[:4].any() and not ink[-4:].any()        # a margin of background on both sides
        assert image.shape[1] > mpimg.imread(png).shape[1] + 100


def test_compose_regime_grids_refuses_nothing_or_a_missing_png(tmp_path):
    with pytest.raises(UserError, match="no regimes"):
        compose_regime_grids([], tmp_path / "out.png")
    with pytest.raises(UserError, match="semantic"):
        compose_regime_grids([{"regime": "semantic", "label": "x", "png": tmp_path / "nope.png"}],
                             tmp_path / "out.png")


def test_the_y_range_clips_long_curves_first_epochs_but_shows_short_curves_whole():
    from rdsweep.analysis.curves import y_range

    long_curves = [[400.0, 150.0, 120.0, 101.0, 100.0], [380.0, 140.0, 112.0, 110.0, 110.5]]
    lo, hi = y_range(long_curves, plateaus=[100.0, 110.0])
    assert lo < 100 and 120 < hi < 150        # the plateaus' approach shows, the first epochs do not
    lo, hi = y_range([[330.0, 200.0], [310.0, 160.0]], plateaus=[200.0, 160.0])   # a 2-epoch demonstration
    assert lo < 160 and hi > 330
    lo, hi = y_range(long_curves + [[330.0, 200.0]], plateaus=[100.0, 110.0, 200.0])
    assert hi > 330


def test_the_curves_table_names_every_family_whole_on_an_80_column_terminal(experiment):
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "rdsweep", "curves", str(experiment)], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    rows = done.stdout.splitlines()
    assert all(len(line) <= 80 for line in rows)
    assert sum("gauss-deconv-normal" in line for line in rows) == 3 and "unconverged" in done.stdout
    assert "…" not in done.stdout and "exp" in rows[0]     # one experiment: named once, in the title


def test_the_elbo_panels_draw_each_epochs_valid_rate_plus_distortion(tmp_path):
    """A cell's own objective does not compare across cells: β = 0.1 has the lowest D + βR and the worst −ELBO.
    The −ELBO lines are the history's valid_rate + valid_distortion, epoch by epoch (issue 32)."""
    import matplotlib.pyplot as plt

    from rdsweep.analysis.curves import draw_curves

    def history(beta, rates, distortions):
        return [{"epoch": e, "loss": 1.0, "rate": r, "distortion": d, "lr": 1e-3, "wall_s": 0.5,
                 "valid_objective": d + beta * r, "valid_rate": r, "valid_distortion": d}
                for e, (r, d) in enumerate(zip(rates, distortions), start=1)]

    small = history(0.1, [20.0, 30.0, 35.0, 36.0], [120.0, 90.0, 80.0, 79.5])     # −ELBO 140, 120, 115, 115.5
    one = history(1.0, [5.0, 8.0, 9.0, 9.2], [130.0, 100.0, 95.0, 94.9])           # −ELBO 135, 108, 104, 104.1
    sigma = [{**h, "valid_objective": h["valid_distortion"] + abs(10.0 - h["valid_rate"])}
             for h in history(1.0, [2.0, 6.0, 9.5, 10.0], [150.0, 110.0, 99.0, 98.0])]
    root = _ledger(tmp_path, results=[
        _cell("small", "gauss-deconv-normal", "converged", beta=0.1, best_epoch=3, history=small),
        _cell("one", "gauss-deconv-normal", "converged", beta=1.0, best_epoch=3, history=one),
        _cell("sigma", "gauss-deconv-normal", "converged", target_rate=10.0, best_epoch=4, history=sigma),
        _cell("vamp", "iaf-pixelcnn-vamp", "converged", beta=1.0, best_epoch=2, history=history(1.0, [1.0, 2.0], [90.0, 85.0])),
    ])
    frame = curves([root])
    written = {name: [h["valid_rate"] + h["valid_distortion"] for h in hist]
               for name, hist in (("small", small), ("one", one), ("sigma", sigma))}

    fig = draw_curves(frame)                      # the default: both, the objective above the −ELBO
    lines = {line.get_gid(): line for ax in fig.axes for line in ax.get_lines() if line.get_gid()}
    for name, values in written.items():
        elbo = lines[f"exp/{ID(name)}/elbo"]
        assert list(elbo.get_xdata()) == [1, 2, 3, 4] and list(elbo.get_ydata()) == pytest.approx(values)
        objective = lines[f"exp/{ID(name)}/objective"]
        assert list(objective.get_ydata()) == pytest.approx(
            [h["valid_objective"] for h in {"small": small, "one": one, "sigma": sigma}[name]])
        assert elbo.axes is not objective.axes and elbo.axes.get_ylabel().startswith("valid −ELBO")
    # the point of it: β = 0.1 sits lowest by its own objective, highest by −ELBO
    at = lambda name, what: lines[f"exp/{ID(name)}/{what}"].get_ydata()[-1]
    assert at("small", "objective") < at("one", "objective") and at("small", "elbo") > at("one", "elbo")
    visible = [ax for ax in fig.axes if ax.get_visible() and ax.get_ylabel()]
    assert len(visible) == 4                      # two families × (objective, −ELBO)
    plt.close(fig)
    for show, kept in (("objective", "objective"), ("elbo", "elbo")):
        fig = draw_curves(frame, show)
        gids = {line.get_gid() for ax in fig.axes for line in ax.get_lines() if line.get_gid()}
        assert len(gids) == 4 and all(g.endswith("/" + kept) for g in gids)
        assert sum(ax.get_visible() for ax in fig.axes) == 2
        plt.close(fig)
    with pytest.raises(UserError, match="use one of"):
        draw_curves(frame, "loss")


def test_cli_curves_show_option_and_the_path_it_writes(experiment, tmp_path, rdsweep):
    """--show through the console script; a --plot name without a suffix gets .png, and the path printed is the
    file written; a bad --show, --show without --plot, a suffix matplotlib cannot write or a directory: exit 2,
    one line, nothing written."""
    out = tmp_path / "plots"
    out.mkdir()
    for show in ("elbo", "objective", "both"):
        done = rdsweep("curves", experiment, "--plot", out / f"{show}.png", "--show", show)
        assert done.returncode == 0, done.stderr
        assert f"wrote {out / f'{show}.png'}" in done.stdout
        assert (out / f"{show}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    done = rdsweep("curves", experiment, "--plot", out / "bare")
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith(f"wrote {out / 'bare.png'}") and not (out / "bare").exists()
    assert (out / "bare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = sorted(p.name for p in out.iterdir())
    for args, message in ((["--plot", out / "x.png", "--show", "loss"], "--show"),
                          (["--show", "elbo"], "--show elbo chooses what --plot draws"),
                          (["--plot", out / "x.v2"], "cannot write a .v2 figure"),
                          (["--plot", out], "is a directory"),
                          (["--plot", tmp_path / "missing" / "x.png"], "does not exist")):
        done = rdsweep("curves", experiment, *args)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith("rdsweep: error:") and message in done.stderr
        assert done.stdout == ""                     # refused before the table is printed
    assert sorted(p.name for p in out.iterdir()) == before and not (tmp_path / "missing").exists()
