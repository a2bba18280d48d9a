"""Frontier maths (Pareto set, convex hull, Ĥ, regimes, seed aggregation) and the RD-plane plot."""
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rdsweep.analysis.collect import SCHEMA
from rdsweep.errors import UserError
from rdsweep.analysis.frontier import (SemanticBound, analyse, hull_mask, pareto_mask, plot, read_table, regime,
                              regime_examples)


def test_pareto_keeps_only_points_nobody_beats_in_both():
    r = [0, 1, 2, 3, 1.5, 4]
    d = [10, 6, 5, 1, 7, 1]
    assert pareto_mask(r, d).tolist() == [True, True, True, True, False, False]


def test_hull_drops_pareto_points_no_beta_selects():
    # (2, 5) is on the Pareto front but above the chord from (1, 6) to (3, 1): no β picks it
    r = [0, 1, 2, 3, 1.5]
    d = [10, 6, 5, 1, 7]
    assert hull_mask(r, d).tolist() == [True, True, False, True, False]
    # every minimiser of D + βR is a hull vertex
    for beta in (0.1, 1.0, 3.0, 10.0):
        assert hull_mask(r, d)[int(np.argmin(np.array(d) + beta * np.array(r)))]


@pytest.mark.parametrize("rate, distortion, expected", [
    (0.5, 80.0, "auto-decoder"),     # R < 2% of Ĥ = 80
    (6.0, 76.0, "semantic"),         # at or below the family's semantic bound (8 nats)
    (8.0, 74.0, "semantic"),
    (30.0, 56.0, "syntactic"),       # beyond it: rate bought at an ELBO cost
    (90.0, 5.0, "auto-encoder"),     # D < 10% of Ĥ
])
def test_regimes_in_the_papers_order(rate, distortion, expected):
    assert regime(rate, distortion, 80.0, semantic_rate=8.0) == expected


def test_regimes_split_at_each_familys_best_elbo(tmp_path):
    # The paper's four models along one family: β = 3 collapses, β = 1 has the best ELBO, β = 0.3 buys
    # rate at an ELBO cost, β = 0.1 reconstructs almost perfectly.
    points = [("gauss-deconv-normal", "---", b, 0, r, d)
              for b, r, d in ((3.0, 0.5, 90.0), (1.0, 10.0, 75.0), (0.3, 30.0, 60.0), (0.1, 80.0, 7.0))]
    pts = analyse(read_table(write_table(tmp_path / "t.parquet", table_rows(points))), "test").points
    assert pts.set_index("beta")["regime"].to_dict() == {
        3.0: "auto-decoder", 1.0: "semantic", 0.3: "syntactic", 0.1: "auto-encoder"}


def test_with_labels_the_semantic_bound_is_the_lowest_rate_that_identifies_the_label(tmp_path, rdsweep):
    # A PixelCNN-like family whose best ELBO is a near-collapsed code (β = 1, probe at chance): by its ELBO
    # alone only that point would be semantic. Its β = 0.3 code names the digit (0.84 ≥ 80% of the best,
    # 0.93): semantic up to it, syntactic beyond. A deconv family without probes keeps the best-ELBO bound.
    pixel = [("gauss-pixelcnn-vamp", "-+v", b, 0, r, d, p) for b, r, d, p in (
        (1.0, 1.0, 91.0, 0.12), (0.5, 5.0, 87.5, 0.60), (0.3, 9.0, 84.0, 0.84), (0.1, 24.0, 80.0, 0.93))]
    deconv = [("gauss-deconv-normal", "---", b, 0, r, d, None) for b, r, d in (
        (3.0, 12.0, 95.0), (1.0, 25.0, 72.0), (0.3, 49.0, 58.0))]
    rows = table_rows([point[:6] for point in pixel + deconv])
    for row, point in zip(rows, pixel + deconv):
        row["probe_accuracy"], row["grid"] = point[6], f"grids/{row['cell_id']}.png"
    path = write_table(tmp_path / "t.parquet", rows)
    result = analyse(read_table(path), "test")
    regimes = result.points.set_index(["family", "beta"])["regime"].to_dict()
    assert [regimes[("gauss-pixelcnn-vamp", b)] for b in (1.0, 0.5, 0.3, 0.1)] == \
           ["auto-decoder", "semantic", "semantic", "syntactic"]
    assert [regimes[("gauss-deconv-normal", b)] for b in (3.0, 1.0, 0.3)] == ["semantic", "semantic", "syntactic"]
    assert result.bounds["gauss-pixelcnn-vamp"] == SemanticBound(9.0, "probe")
    assert result.bounds["gauss-deconv-normal"] == SemanticBound(25.0, "no probe")
    # The semantic example is the best-ELBO code that names the digit (β = 0.3), not the better-ELBO β = 0.5.
    examples = {e["regime"]: e["label"] for e in regime_examples(result, tmp_path)}
    assert examples["semantic"].startswith("gauss-pixelcnn-vamp (-+v) β=0.3:") and "probe 0.84" in examples["semantic"]

    done = rdsweep("frontier", path)
    assert done.returncode == 0, done.stderr
    rule = " ".join(done.stdout.split("regimes: ")[1].split())
    assert rule.startswith("semantic up to the lowest rate whose code identifies the label (probe ≥ 0.744, 80% of "
                           "the table's best, 0.930) in -+v; up to the best-ELBO rate in --- (no probe accuracy);")
    assert re.search(r" 0\.840 +(✓ +)?semantic", done.stdout)    # the probe column, beside the regime

    # Without labels anywhere every family splits at its best ELBO: the β = 1 point has the pixel family's.
    for row in rows:
        row["probe_accuracy"] = None
    result = analyse(read_table(write_table(tmp_path / "u.parquet", rows)), "test")
    regimes = result.points.set_index(["family", "beta"])["regime"].to_dict()
    assert [regimes[("gauss-pixelcnn-vamp", b)] for b in (1.0, 0.5, 0.3, 0.1)] == \
           ["auto-decoder", "syntactic", "syntactic", "syntactic"]
    # A table of collapsed codes only: the best probe is chance, and no auto-decoder identifies the label.
    for row in rows:
        row["probe_accuracy"] = 0.1
    result = analyse(read_table(write_table(tmp_path / "c.parquet", rows[:1])), "test")
    assert result.bounds["gauss-pixelcnn-vamp"].basis == "best-elbo" and not result.points["identifies"].any()


def test_unconverged_points_are_left_out_unless_asked_for(tmp_path):
    rows = table_rows(POINTS)
    for row in rows:  # the PixelCNN family's β = 1 model, the best −ELBO of the table, was still improving
        if row["family"] == "gauss-pixelcnn-vamp" and row["beta"] == 1.0:
            row["status"] = "unconverged"
    path = write_table(tmp_path / "t.parquet", rows)
    converged = analyse(read_table(path), "test")
    assert len(converged.points) == 3 and converged.points["converged"].all()
    assert converged.h_hat == pytest.approx(84.0)  # Ĥ from converged points only
    both = analyse(read_table(path, include_unconverged=True), "test")
    assert len(both.points) == 4 and both.points["converged"].sum() == 3
    assert both.h_hat == pytest.approx(81.2)
    for row in rows:
        row["status"] = "unconverged"
    with pytest.raises(UserError, match="no converged cells.*8 unconverged cells.*--include-unconverged"):
        read_table(write_table(tmp_path / "u.parquet", rows))


def table_rows(points, dataset="mnist5k", entropy=None):
    """Frontier-table rows (test split) for (family, code, beta, seed, R, D) tuples."""
    rows = []
    for family, code, beta, seed, rate, distortion in points:
        row = {name: None for name in SCHEMA.names}
        row.update(cell_id=f"{family}{beta}{seed}", experiment="e", dataset=dataset, family=family,
                   paper_code=code, objective="beta", beta=beta, seed=seed, split="test", rate=rate,
                   distortion=distortion, elbo=-(rate + distortion), status="converged", true_entropy=entropy)
        rows.append(row)
    return rows


POINTS = [  # two seeds per setting; the PixelCNN family sits at far lower rate at β = 1
    ("gauss-deconv-normal", "---", 0.3, 0, 30.0, 70.0), ("gauss-deconv-normal", "---", 0.3, 1, 32.0, 72.0),
    ("gauss-deconv-normal", "---", 1.0, 0, 20.0, 85.0), ("gauss-deconv-normal", "---", 1.0, 1, 22.0, 83.0),
    ("gauss-pixelcnn-vamp", "-+v", 0.3, 0, 12.0, 72.0), ("gauss-pixelcnn-vamp", "-+v", 0.3, 1, 12.0, 74.0),
    ("gauss-pixelcnn-vamp", "-+v", 1.0, 0, 0.2, 81.0), ("gauss-pixelcnn-vamp", "-+v", 1.0, 1, 0.4, 81.0),
]


def write_table(path, rows):
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path)
    return path


def test_seeds_aggregate_and_h_hat_is_the_best_elbo(tmp_path):
    path = write_table(tmp_path / "t.parquet", table_rows(POINTS))
    result = analyse(read_table(path), "test")
    assert result.h_hat == pytest.approx(81.2) and not result.h_exact
    pts = result.points.set_index(["family", "beta"])
    assert len(pts) == 4 and (pts["seeds"] == 2).all()
    assert pts.loc[("gauss-deconv-normal", 0.3), "rate"] == pytest.approx(31.0)
    assert pts.loc[("gauss-deconv-normal", 0.3), "rate_std"] == pytest.approx(np.std([30, 32], ddof=1))
    assert pts.loc[("gauss-pixelcnn-vamp", 1.0), "regime"] == "auto-decoder"
    # overall, the deconv family's β = 1 point is beaten by the PixelCNN's β = 0.3 point (lower R and D)
    assert not pts.loc[("gauss-deconv-normal", 1.0), "overall_pareto"]
    assert pts.loc[("gauss-deconv-normal", 1.0), "pareto"]  # but it is on its own family's frontier


def test_exact_entropy_is_used_where_the_dataset_knows_it(tmp_path):
    rows = table_rows([("toy", None, b, 0, r, d) for b, r, d in ((0.3, 0.3, 2.8), (1.0, 0.01, 3.03))],
                      dataset="toy", entropy=3.0184)
    result = analyse(read_table(write_table(tmp_path / "toy.parquet", rows)), "test")
    assert result.h_exact and result.h_hat == 3.0184


def test_plot_writes_a_png(tmp_path):
    result = analyse(read_table(write_table(tmp_path / "t.parquet", table_rows(POINTS))), "test")
    out = plot(result, tmp_path / "rd.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_read_table_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_table(tmp_path / "missing.parquet")
    path = write_table(tmp_path / "t.parquet", table_rows(POINTS))
    with pytest.raises(UserError, match="no 'train' split"):
        read_table(path, "train")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(UserError, match="cannot read frontier table"):
        read_table(tmp_path / "junk.parquet")


def test_cli_frontier_prints_and_plots(tmp_path, rdsweep):
    path = write_table(tmp_path / "frontier.parquet", table_rows(POINTS))
    done = rdsweep("frontier", path, "--plot")
    assert done.returncode == 0, done.stderr
    assert "Ĥ = best −ELBO = 81.200" in done.stdout and "gauss-pixelcnn-vamp (-+v)" in done.stdout
    assert (tmp_path / "frontier-test.png").exists()
    done = rdsweep("frontier", path, "--plot", tmp_path / "custom.png", "--split", "test")
    assert done.returncode == 0 and (tmp_path / "custom.png").exists()


def test_the_printed_tables_read_whole_at_80_columns(tmp_path, rdsweep):
    # make demo's output piped to a file (rich assumes 80 columns there): three-digit D and −ELBO with their
    # errors, a warm-up knob, probes and an auto-decoder. Before, the overall table was 83 columns wide and
    # rich cut its regimes to "auto-deco" or "auto-decod…".
    points = [("gauss-pixelcnn-normal", "-+-", 1.0, 0, 1.09, 93.21), ("gauss-pixelcnn-normal", "-+-", 0.3, 0, 7.38, 87.81),
              ("gauss-deconv-normal", "---", 3.0, 0, 10.58, 111.59), ("gauss-deconv-normal", "---", 0.3, 0, 44.42, 65.83)]

    def printed(distortion_se):
        rows = table_rows(points)
        for row, probe in zip(rows, (0.197, 0.716, 0.790, 0.886)):
            row.update(probe_accuracy=probe, rate_se=0.25, distortion_se=distortion_se, elbo_se=distortion_se)
        rows[0].update(objective="warmup", warmup_epochs=10)
        done = rdsweep("frontier", write_table(tmp_path / "t.parquet", rows), env={"COLUMNS": "80"})
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert max(map(len, lines)) <= 80 and not any("…" in line for line in lines), done.stdout
        return lines[next(i for i, line in enumerate(lines) if line.startswith("overall")):]

    overall = [" ".join(line.split()) for line in printed(1.46)]
    assert "-+- β=1 W=10 1 1.09±0.25 93.21±1.46 94.30±1.46 0.197 ✓ auto-decoder" in overall
    assert "--- β=0.3 1 44.42±0.25 65.83±1.46 110.25±1.46 0.886 ✓ syntactic" in overall
    # Errors of ten nats and more (a seed that collapsed): the numbers stay whole; a regime folds if it must.
    overall = " ".join(" ".join(printed(11.46)).split())
    assert "1.09±0.25 93.21±11.46 94.30±11.46" in overall and "44.42±0.25 65.83±11.46 110.25±11.46" in overall


def test_labels_of_points_on_one_spot_are_joined_and_distant_ones_kept_apart():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rdsweep.analysis.frontier import crowded_labels

    fig, ax = plt.subplots(figsize=(11, 7))
    ax.set_xlim(0, 3.3), ax.set_ylim(0, 3.3)
    # the toy: four collapsed β at R ≈ 0 on one spot, two target rates and a β well apart
    rates, distortions = [0.0, 0.001, 0.002, 0.01, 0.31, 0.56, 2.81], [3.03, 3.03, 3.03, 3.02, 2.72, 2.47, 0.28]
    labels = ["10", "3", "1.5", "1", "0.25", "0.5", "0.6"]
    out = crowded_labels(ax, rates, distortions, labels)
    plt.close(fig)
    assert [text for _, text in out] == ["10, 3, 1.5, 1", "0.25", "0.5", "0.6"]
    assert out[0][0] == (0.0, 3.03) and out[-1][0] == (2.81, 0.28)


def test_labels_of_nearby_points_are_moved_apart_not_printed_over_each_other():
    # the mnist5k study's PixelCNN families at β = 0.1 and σ = 20: neighbours a label's width apart with other
    # settings (not joined by crowded_labels), whose labels printed over each other and over the markers
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rdsweep.analysis.frontier import crowded_labels, marker_boxes, place_label

    fig, ax = plt.subplots(figsize=(11, 7))
    ax.set_xlim(0, 100), ax.set_ylim(0, 100)
    points = ax.transData.inverted().transform([(400 + 16 * i, 300 - 3 * i) for i in range(3)] + [(975, 300)])
    labels = ["σ=20, β=0.1", "β=0.3", "σ=5", "β=0.1"]    # the last at the axes' right edge
    groups = crowded_labels(ax, points[:, 0], points[:, 1], labels)
    assert len(groups) == 4                                   # four labels to place, not fewer
    markers = marker_boxes(ax, points[:, 0], points[:, 1], size_pt=5)
    renderer = fig.canvas.get_renderer()

    def boxes(place):
        placed = list(markers)
        for (r, d), text in groups:
            label = ax.annotate(text, (r, d), xytext=(3, 3), textcoords="offset points", fontsize=6)
            if place:
                place_label(label, placed)
            else:
                placed.append(label.get_window_extent(renderer))
        return placed[len(markers):]

    def clashes(labels_):
        overlap = lambda a, b: max(0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0, min(a.y1, b.y1) - max(a.y0, b.y0))
        return sum(overlap(a, b) for i, a in enumerate(labels_) for b in [*labels_[i + 1:], *markers]
                   if not (b in markers and markers.index(b) == labels_.index(a)))

    assert clashes(boxes(place=False)) > 50                   # all up and to the right: square pixels of overlap
    placed = boxes(place=True)
    plt.close(fig)
    assert clashes([b.padded(-2) for b in placed]) == 0       # (placed boxes carry 2 px of air)
    inside = ax.get_window_extent(renderer)
    assert all(inside.x0 <= b.x0 + 2 and b.x1 - 2 <= inside.x1 for b in placed)   # the edge label moved left
    for (r, d), box in zip(points, placed):                   # each label still beside its own point
        x, y = ax.transData.transform((r, d))
        assert box.x0 - 10 <= x <= box.x1 + 10 and box.y0 - 10 <= y <= box.y1 + 10


def test_one_label_for_neighbours_that_say_the_same_and_own_labels_for_neighbours_that_do_not():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rdsweep.analysis.frontier import crowded_labels

    fig, ax = plt.subplots(figsize=(11, 7))
    ax.set_xlim(0, 100), ax.set_ylim(0, 100)
    points = ax.transData.inverted().transform([(400 + 12 * i, 300) for i in range(3)])   # 12 px apart
    same = crowded_labels(ax, points[:, 0], points[:, 1], ["β=0.1"] * 3)
    different = crowded_labels(ax, points[:, 0], points[:, 1], ["β=0.1", "β=0.3", "σ=20"])
    plt.close(fig)
    assert [text for _, text in same] == ["β=0.1"]
    assert [text for _, text in different] == ["β=0.1", "β=0.3", "σ=20"]


def main_axes(result, **kwargs):
    """The RD plot's figure for `result` and its main axes (the inset, where there is one, is its child)."""
    from rdsweep.analysis.frontier import figure

    fig = figure(result, **kwargs)
    return fig, fig.axes[0]


def bars(ax):
    """(x, y, x-bar length, y-bar length) of every drawn point that has error bars, the legend's sample left out."""
    out = []
    for container in ax.containers:
        if container.has_yerr and not container.get_label().startswith("±"):
            line, _, (xbars, ybars) = container.lines
            out += [(x, y, abs(xs[1][0] - xs[0][0]), abs(ys[1][1] - ys[0][1])) for x, y, xs, ys
                    in zip(line.get_xdata(), line.get_ydata(), xbars.get_segments(), ybars.get_segments())]
    return out


def test_a_one_seed_table_says_1_seed_and_draws_no_bars(tmp_path):
    import matplotlib.pyplot as plt

    one_seed = [p for p in POINTS if p[3] == 0]
    fig, ax = main_axes(analyse(read_table(write_table(tmp_path / "t.parquet", table_rows(one_seed))), "test"))
    title, legend = ax.get_title(), [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(fig)
    assert "(4 settings, 1 seed each)" in title
    assert "mean" not in title and "±" not in title and "std" not in title
    assert bars(ax) == [] and not any("std" in t for t in legend)
    # no IAF family drawn, so the legend does not explain its dashes (make demo's plot said it did)
    assert "IAF" not in ax.get_legend().get_title().get_text()
    iaf = [("iaf-deconv-normal", "+--") + p[2:] for p in one_seed[:2]]
    fig, ax = main_axes(analyse(read_table(write_table(tmp_path / "i.parquet", table_rows(one_seed + iaf))), "test"))
    assert "dashed: IAF encoder" in ax.get_legend().get_title().get_text()
    plt.close(fig)


def test_settings_with_two_seeds_have_their_spread_as_bars_and_the_title_says_so(tmp_path):
    import matplotlib.pyplot as plt

    mixed = POINTS + [("gauss-deconv-normal", "---", 0.1, 0, 60.0, 55.0)]   # a setting with one seed
    fig, ax = main_axes(analyse(read_table(write_table(tmp_path / "t.parquet", table_rows(mixed))), "test"))
    title, legend = ax.get_title(), [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(fig)
    assert "1–2 seeds per setting" in title and "bars: ±1 std over seeds where ≥ 2" in title
    assert "±1 std over seeds (settings with ≥ 2)" in legend
    drawn = {(round(float(x), 3), round(float(y), 3)): lengths for x, y, *lengths in bars(ax)}
    assert len(drawn) == 4 and (60.0, 55.0) not in drawn                  # the one-seed setting has none
    assert all(max(lengths) > 0 for lengths in drawn.values())
    spread = 2 * np.std([30, 32], ddof=1)                                 # ±1 sample std of R, and of D
    assert drawn[(31.0, 71.0)] == pytest.approx([spread, spread])
    assert drawn[(0.3, 81.0)] == pytest.approx([2 * np.std([0.2, 0.4], ddof=1), 0.0])

    fig, ax = main_axes(analyse(read_table(write_table(tmp_path / "u.parquet", table_rows(POINTS))), "test"))
    plt.close(fig)
    assert "4 settings, 2 seeds each: means; bars: ±1 std over seeds" in ax.get_title()


def test_the_region_below_the_bound_is_named_for_what_it_is(tmp_path):
    import matplotlib.pyplot as plt

    fig, ax = main_axes(analyse(read_table(write_table(tmp_path / "t.parquet", table_rows(POINTS))), "test"))
    legend = " ".join(t.get_text() for t in ax.get_legend().get_texts())
    plt.close(fig)
    assert "below the best ELBO seen: D < Ĥ − R" in legend and "not proven infeasible" in legend
    assert "infeasible:" not in legend
    rows = table_rows([("toy", None, b, 0, r, d) for b, r, d in ((0.3, 0.3, 2.8), (1.0, 0.01, 3.03))],
                      dataset="toy", entropy=3.0184)
    fig, ax = main_axes(analyse(read_table(write_table(tmp_path / "toy.parquet", rows)), "test"))
    legend = " ".join(t.get_text() for t in ax.get_legend().get_texts())
    plt.close(fig)
    assert "infeasible: D < H − R" in legend                               # exact H: strictly infeasible


def bound_line(ax):
    return next(line for line in ax.get_lines() if line.get_label().startswith("D = "))


def test_on_a_symlog_rate_axis_the_bound_line_is_a_smooth_curve_and_says_so(tmp_path):
    import matplotlib.pyplot as plt

    result = analyse(read_table(write_table(tmp_path / "t.parquet", table_rows(POINTS))), "test")
    fig, ax = main_axes(result, rate_axis="symlog")
    plt.close(fig)
    line = bound_line(ax)
    assert ax.get_xscale() == "symlog" and len(line.get_xdata()) >= 200
    assert "a curve on this symlog rate axis" in line.get_label()
    gaps = np.diff(ax.transData.transform(line.get_xydata())[:, 0])      # evenly dense on screen
    assert gaps.max() < 5                                                  # display pixels between samples
    np.testing.assert_allclose(line.get_ydata(), result.h_hat - line.get_xdata())
    fig, ax = main_axes(result, rate_axis="linear")
    plt.close(fig)
    assert ax.get_xscale() == "linear" and len(bound_line(ax).get_xdata()) == 2
    assert "curve" not in bound_line(ax).get_label()
    fig, ax = main_axes(result)                                            # auto: these rates span > 10 nats
    plt.close(fig)
    assert ax.get_xscale() == "symlog"


def test_cli_rate_axis_option(tmp_path, rdsweep):
    path = write_table(tmp_path / "frontier.parquet", table_rows(POINTS))
    for axis in ("symlog", "linear"):
        done = rdsweep("frontier", path, "--plot", tmp_path / f"{axis}.png", "--rate-axis", axis)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / f"{axis}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    done = rdsweep("frontier", path, "--plot", tmp_path / "log.png", "--rate-axis", "log")
    assert done.returncode == 2 and "--rate-axis log: use one of auto, linear, symlog" in done.stderr
    assert not (tmp_path / "log.png").exists()


BAND = [  # three PixelCNN-like families on one curve (within 0.3 nats), a deconv-like one far from it
    *[(f, c, b, 0, r, d + off)
      for f, c, off in (("gauss-pixelcnn-normal", "-+-", 0.0), ("gauss-pixelcnn-maf", "-++", 0.3),
                        ("gauss-pixelcnn-vamp", "-+v", -0.3))
      for b, r, d in ((3.0, 0.2, 90.5), (1.0, 5.0, 85.0), (0.3, 12.0, 80.0))],
    *[("gauss-deconv-normal", "---", b, 0, r, d)
      for b, r, d in ((3.0, 10.0, 100.0), (1.0, 30.0, 70.0), (0.3, 60.0, 55.0))],
]


def test_frontiers_that_run_together_get_a_zoom_that_names_them(tmp_path):
    import matplotlib.pyplot as plt

    from rdsweep.analysis.frontier import crowded_band

    result = analyse(read_table(write_table(tmp_path / "t.parquet", table_rows(BAND))), "test")
    fig, ax = main_axes(result)
    assert crowded_band(ax, result.points) == ["gauss-pixelcnn-normal", "gauss-pixelcnn-maf", "gauss-pixelcnn-vamp"]
    (inset,) = ax.child_axes
    names = sorted(t.get_text() for t in inset.texts)
    (lo, hi), (main_lo, main_hi) = inset.get_ylim(), ax.get_ylim()
    plt.close(fig)
    assert names == sorted(["-+-", "-++", "-+v"])
    assert lo < 79.7 and 90.8 < hi and hi - lo < (main_hi - main_lo) / 4   # magnified on the band, all of it
    # Apart, no zoom: the deconv family and one PixelCNN family alone.
    apart = [p for p in BAND if p[1] in ("---", "-+-")]
    fig, ax = main_axes(analyse(read_table(write_table(tmp_path / "u.parquet", table_rows(apart))), "test"))
    plt.close(fig)
    assert ax.child_axes == []


def test_spread_keeps_labels_a_gap_apart_in_order():
    from rdsweep.analysis.frontier import spread

    out = spread([100.0, 101.0, 50.0, 99.0], gap=10.0, low=0.0)
    assert out.tolist() == [91.0, 101.0, 50.0, 81.0]
    assert spread([5.0, 4.0], gap=10.0, low=0.0).tolist() == [10.0, 0.0]  # pushed up off the floor


def test_negative_distortions_stay_in_view(tmp_path):
    # continuous data (the curve dataset): D = −log p(x|z) can be below 0, and the axes once cut those points off
    import matplotlib.pyplot as plt

    rows = table_rows([("curve", None, 1.0, s, 2.4, -0.5 - 0.01 * s) for s in range(3)], dataset="curve", entropy=1.2)
    fig, ax = main_axes(analyse(read_table(write_table(tmp_path / "c.parquet", rows)), "test"))
    plt.close(fig)
    assert ax.get_ylim()[0] < -0.52 and ax.get_xlim()[1] > 2.4


@pytest.mark.parametrize("rate_axis", ["linear", "symlog"])
def test_the_point_of_largest_rate_sits_clear_of_the_right_frame(tmp_path, rate_axis):
    # the full-digits study's two β = 1 cells: on symlog an 8 % margin put `---` at R = 26.1 half under the frame
    import matplotlib.pyplot as plt

    from rdsweep.analysis.frontier import MARKER_PT

    rows = table_rows([("gauss-deconv-normal", "---", 1.0, 0, 26.14, 62.52),
                       ("gauss-pixelcnn-normal", "-+-", 1.0, 0, 3.64, 84.59)], dataset="mnist")
    fig, ax = main_axes(analyse(read_table(write_table(tmp_path / "t.parquet", rows)), "test"), rate_axis=rate_axis)
    x_point = ax.transData.transform((26.14, 62.52))[0]
    gap_pt = (ax.get_window_extent().x1 - x_point) * 72 / fig.dpi
    plt.close(fig)
    assert gap_pt > 2 * MARKER_PT, gap_pt   # the marker whole, and room for its label beside it
