"""What a frontier table must hold, and what a result must be (docs/reliability.md): a table with an impossible
value, or a ledger whose results are not what they claim, is refused with exit 2 and one line on stderr naming
the file, never a traceback, and nothing on disk changes; a ledger written by a newer rdsweep still reads.

Each kind runs the installed console script in a subprocess (the `rdsweep` fixture), as a user would."""
import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rdsweep.analysis.collect import SCHEMA
from rdsweep.analysis.frontier import read_table
from rdsweep.cells import Cell
from rdsweep.errors import UserError
from rdsweep.sweep.ledger import Experiment
from rdsweep.training.result import cell_result

FAMILIES = {"gauss-deconv-normal": "---", "gauss-pixelcnn-vamp": "-+v"}


def rows_of(dataset="mnist5k", families=FAMILIES, betas=(0.3, 1.0), base=(30.0, 70.0)) -> list[dict]:
    """A valid table: every family × β, converged, on all three splits; ids of the ledger's form."""
    rows = []
    for i, (family, code) in enumerate(families.items()):
        for j, beta in enumerate(betas):
            cell = Cell(dataset=dataset, family=family, beta=beta).validated()
            for k, split in enumerate(("train", "valid", "test")):
                rate, distortion = base[0] / (1 + i + j), base[1] + 5 * i + 3 * j + 0.5 * k
                row = dict.fromkeys(SCHEMA.names)
                row.update(cell_id=cell.cell_id, experiment="e", dataset=dataset, family=family, paper_code=code,
                           objective="beta", beta=beta, seed=0, size="small", split=split, rate=rate,
                           distortion=distortion, elbo=-(rate + distortion), rate_se=0.1, distortion_se=0.2,
                           elbo_se=0.2, examples_n=500, probe_accuracy=0.5, status="converged")
                rows.append(row)
    return rows


def write(path, rows):
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path)   # SCHEMA carries collect's table mark
    return path


def snapshot(folder) -> dict:
    """Every file under a folder, by relative path, with its bytes: what "nothing on disk changed" compares."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(done, path, *words) -> str:
    """Exit 2, one line `rdsweep: error: …` naming the file (or one of a list) and what is wrong, no traceback."""
    err = done.stderr
    assert done.returncode == 2, (done.returncode, err)
    assert err.count("\n") == 1 and err.startswith("rdsweep: error: ") and "Traceback" not in err, err
    assert any(str(p) in err for p in (path if isinstance(path, list) else [path])), err
    for word in words:
        assert word in err, (word, err)
    return err


def _set(row: int, **values):
    def edit(rows):
        rows[row].update(values)
    return edit


def _every(**values):
    def edit(rows):
        for r in rows:
            r.update(values)
    return edit


TEST_ROW = 2   # the test split of the first cell
# The impossible values issue 33 found, each with the command it broke: (edit, command, what the line says).
CLI_CASES = {
    "an infinite rate, plotted": (_set(TEST_ROW, rate=math.inf), ["frontier", "--plot"], "rate = inf"),
    "every rate and distortion NaN": (_every(rate=math.nan, distortion=math.nan), ["frontier"], "rate = null"),
    "an unknown family": (_set(TEST_ROW, family="gauss-deconv-normale"), ["frontier"], "not a family"),
    "a null dataset": (_set(TEST_ROW, dataset=None), ["frontier"], "dataset = null"),
    "a NaN beta": (_set(TEST_ROW, beta=math.nan), ["frontier"], "beta = null"),
    "a NaN rate on one converged row": (_set(TEST_ROW, rate=math.nan), ["frontier"], "needs a finite rate"),
    "a distortion of minus infinity": (_set(TEST_ROW, distortion=-math.inf), ["frontier", "--plot"],
                                       "distortion = -inf"),
    "a negative rate": (_set(TEST_ROW, rate=-5.0, elbo=-65.5), ["frontier"], "rate = -5.0"),
    "an infinite valid ELBO": (_set(1, elbo=math.inf), ["select"], "elbo = inf"),
    "a negative rate, compared": (_set(TEST_ROW, rate=-5.0, elbo=-65.5),
                                  ["compare", "gauss-deconv-normal β=0.3", "gauss-pixelcnn-vamp β=0.3"], "rate = -5.0"),
    "a negative standard error, selected": (_set(1, elbo_se=-0.2), ["select"], "elbo_se = -0.2"),
}


@pytest.mark.parametrize("case", CLI_CASES)
def test_a_table_with_an_impossible_value_exits_2_naming_the_file(case, tmp_path, rdsweep):
    edit, (command, *options), message = CLI_CASES[case]
    rows = rows_of()
    edit(rows)
    path = write(tmp_path / "frontier.parquet", rows)
    before = snapshot(tmp_path)
    done = rdsweep(command, path, *options)
    refused(done, path, message, "row ")
    assert snapshot(tmp_path) == before     # the table as it was, and no plot written


# The rest of the rules, in process (read_table is the one gate `frontier`, `select` and `compare` read through).
RULES = {
    "status": (_set(TEST_ROW, status="Converged"), "status"),
    "split": (_set(TEST_ROW, split="val"), "split"),
    "duplicate row": (lambda rows: rows.append(dict(rows[TEST_ROW])), "a second row of this cell"),
    "null cell id": (_set(TEST_ROW, cell_id=None), "cell_id = null"),
    "null experiment": (_set(TEST_ROW, experiment=None), "experiment = null"),
    "unknown dataset": (_every(dataset="mnist6k"), "dataset = 'mnist6k'"),
    "wrong paper code": (_set(TEST_ROW, paper_code="-+-"), "paper_code"),
    "unknown objective": (_set(TEST_ROW, objective="betta"), "objective"),
    "beta of zero": (_set(TEST_ROW, beta=0.0), "beta = 0.0"),
    "beta on a target rate": (_set(TEST_ROW, objective="target-rate", target_rate=5.0), "beta = "),
    "no sigma on a target rate": (_set(TEST_ROW, objective="target-rate", beta=None), "target_rate = null"),
    "free bits without lambda": (_set(TEST_ROW, objective="free-bits"), "free_bits = null"),
    "lambda on beta": (_set(TEST_ROW, free_bits=0.5), "free_bits = 0.5"),
    "warmup without epochs": (_set(TEST_ROW, objective="warmup"), "warmup_epochs = null"),
    "bad encoder std": (_set(TEST_ROW, encoder_std="-1"), "encoder_std"),
    "null seed": (_set(TEST_ROW, seed=None), "seed = null"),
    "negative rate beyond the noise": (_set(TEST_ROW, rate=-0.5, rate_se=0.1, elbo=-70.5), "rate = -0.5"),
    "negative distortion on binary images": (_set(TEST_ROW, distortion=-1.0, elbo=-29.0), "distortion = -1.0"),
    "elbo that is not -(R + D)": (_set(TEST_ROW, elbo=-1.0), "elbo = -1.0"),
    "infinite standard error": (_set(TEST_ROW, rate_se=math.inf), "rate_se = inf"),
    "infinite IWAE": (_set(TEST_ROW, iwae=-math.inf), "iwae = -inf"),
    "probe above 1": (_set(TEST_ROW, probe_accuracy=1.5), "probe_accuracy = 1.5"),
    "infinite true entropy": (_set(TEST_ROW, true_entropy=math.inf), "true_entropy = inf"),
    "negative count": (_set(TEST_ROW, examples_n=-3), "examples_n = -3"),
}


@pytest.mark.parametrize("case", RULES)
def test_every_rule_of_a_table_is_checked_on_every_row(case, tmp_path):
    edit, message = RULES[case]
    rows = rows_of()
    edit(rows)
    path = write(tmp_path / "t.parquet", rows)
    for split in ("train", "valid", "test"):     # the fault is found whichever split is asked for
        with pytest.raises(UserError) as e:
            read_table(path, split, include_unconverged=True)
        assert str(path) in str(e.value) and message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_a_failed_row_needs_no_rate_and_a_first_fault_counts_the_others(tmp_path):
    rows = rows_of()
    for row in rows[:3]:
        row.update(status="failed", rate=None, distortion=None, elbo=None, rate_se=None)
    assert len(read_table(write(tmp_path / "ok.parquet", rows))) == 3
    for row in rows[3:6]:
        row["rate"] = math.inf
    with pytest.raises(UserError, match=r"row 3 \(cell [0-9a-f]{16}, train split\): rate = inf: .*\(and 2 more rows\)"):
        read_table(write(tmp_path / "bad.parquet", rows))


@pytest.mark.parametrize("rate, rate_se, ok", [(-0.005, None, True), (-0.03, None, False), (-0.03, 0.01, True),
                                               (-0.05, 0.01, False), (-0.0, 0.0, True)])
def test_a_rate_may_dip_below_0_by_estimation_noise_only(rate, rate_se, ok, tmp_path):
    """R is a KL, ≥ 0; its Monte Carlo estimate may be below by 0.01 nats or 4 of its standard errors."""
    rows = rows_of()
    rows[TEST_ROW].update(rate=rate, rate_se=rate_se, elbo=-(rate + rows[TEST_ROW]["distortion"]))
    path = write(tmp_path / "t.parquet", rows)
    if ok:
        assert read_table(path)["rate"].min() == rate
    else:
        with pytest.raises(UserError, match="below 0 by more than estimation noise"):
            read_table(path)


def test_continuous_data_may_have_a_negative_distortion(tmp_path):
    """D = −log d(x|z) is a density's on the curve (and lingauss): negative is possible, infinite is not."""
    rows = rows_of(dataset="curve", families={"curve": None}, base=(2.4, -5.0))
    assert read_table(write(tmp_path / "curve.parquet", rows))["distortion"].max() < 0
    rows[TEST_ROW].update(distortion=-math.inf)
    with pytest.raises(UserError, match="distortion = -inf"):
        read_table(write(tmp_path / "bad.parquet", rows))


def test_a_table_from_before_the_later_columns_still_reads(tmp_path, rdsweep):
    """Columns an earlier collect (or another tool) did not write read as nulls of the schema's type (numeric
    ones were refused as `object`); those the readers need must be there."""
    table = pa.Table.from_pylist(rows_of(), schema=SCHEMA)
    old = table.drop_columns(["free_bits", "warmup_epochs", "encoder_std", "rate_se", "distortion_se", "elbo_se",
                              "examples_n", "examples_file", "min_delta_relative", "probe_accuracy_se", "iwae",
                              "true_entropy", "marginal_kl", "mutual_info"])
    pq.write_table(old, tmp_path / "old.parquet")
    rows = read_table(tmp_path / "old.parquet")
    assert len(rows) == 4 and str(rows["free_bits"].dtype) == "Float64" and rows["rate_se"].isna().all()
    for command in ("frontier", "select"):
        done = rdsweep(command, tmp_path / "old.parquet")
        assert done.returncode == 0 and not done.stderr, done.stderr
    pq.write_table(old.drop_columns(["elbo"]), tmp_path / "no-elbo.parquet")
    with pytest.raises(UserError, match="no column 'elbo'"):
        read_table(tmp_path / "no-elbo.parquet")


# ---- the ledger: a result's cell must be its own, and a newer rdsweep's cell fields are kept ------------------

SPEC = """dataset = "toy"
families = ["toy"]
seeds = [0]
[budget]
epochs = 3
batch_size = 500
[[objective]]
kind = "beta"
values = [0.5, 1.0]
"""


def result_of(cell: Cell, rate=0.4) -> dict:
    splits = {s: {"rate": rate, "distortion": 2.7, "elbo": -(rate + 2.7)} for s in ("train", "valid", "test")}
    return {"cell": cell.to_dict(), "cell_id": cell.cell_id, "status": "converged", "stop_reason": "plateau",
            "epochs": 3, "best_epoch": 2, "wall_s": 1.0, "device": "cpu", "rdsweep_version": "0.5.0",
            "splits": splits, "history": [], "experiment": "toy"}


@pytest.fixture
def ledger(tmp_path):
    """A spec of two toy cells and an experiment holding both cells' results, as launch would name them."""
    from rdsweep.spec import load_spec

    spec = tmp_path / "toy.toml"
    spec.write_text(SPEC)
    cells = load_spec(spec).cells()
    experiment = Experiment(tmp_path / "results" / "toy")
    for i, cell in enumerate(cells):
        experiment.write_result(cell_result(result_of(cell, rate=0.4 + i)))
    return spec, experiment, cells


def test_two_results_with_their_cells_swapped_are_refused_naming_the_file(ledger, rdsweep):
    spec, experiment, cells = ledger
    paths = [experiment.result_path(c.cell_id) for c in cells]
    a, b = (json.loads(p.read_text()) for p in paths)
    a["cell"], b["cell"] = b["cell"], a["cell"]      # rows would carry the other cell's β under this id
    for path, result in zip(paths, (a, b)):
        path.write_text(json.dumps(result))
    before = snapshot(experiment.path.parent)
    for args in (["collect", experiment.path], ["status", experiment.path],
                 ["launch", spec, "--storage", experiment.path.parent, "--dry-run"]):
        done = rdsweep(*args)
        refused(done, paths, "is not the id of the cell it holds")
        assert snapshot(experiment.path.parent) == before        # no table written, no file touched


def test_a_result_with_a_cell_field_from_a_newer_rdsweep_still_reads(ledger, rdsweep):
    """Unset (None: a field added later that this cell does not use): its id is still checked, and holds."""
    spec, experiment, cells = ledger
    path = experiment.result_path(cells[0].cell_id)
    result = json.loads(path.read_text())
    result["cell"]["posterior_temperature"] = None
    path.write_text(json.dumps(result))
    for args in (["status", experiment.path], ["launch", spec, "--storage", experiment.path.parent, "--dry-run"],
                 ["collect", experiment.path]):
        done = rdsweep(*args)
        assert done.returncode == 0, done.stderr
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("rdsweep: warning: "), done.stderr
        assert "'posterior_temperature'" in done.stderr and str(path) in done.stderr
    assert len(read_table(experiment.path / "frontier.parquet")) == 2
    # an unset unknown field does not enter the id, so an edited cell is still found out
    result["cell"]["beta"] = 2.0
    path.write_text(json.dumps(result))
    refused(rdsweep("collect", experiment.path), path, "is not the id of the cell it holds")


def test_a_set_cell_field_from_a_newer_rdsweep_is_kept_and_its_id_left_unchecked(ledger, rdsweep):
    """A newer rdsweep hashes a field it sets, which this one cannot: the result reads, with a warning."""
    _, experiment, cells = ledger
    cell = {**cells[0].to_dict(), "posterior_temperature": 0.5}
    newer_id = "0123456789abcdef"                   # what the newer rdsweep's hash would be
    experiment.result_path(cells[0].cell_id).unlink()
    path = experiment.result_path(newer_id)
    path.write_text(json.dumps({**result_of(cells[0]), "cell": cell, "cell_id": newer_id}))
    done = rdsweep("collect", experiment.path)
    assert done.returncode == 0 and done.stderr.count("\n") == 1, done.stderr
    assert "not checked" in done.stderr and str(path) in done.stderr
    assert newer_id in set(read_table(experiment.path / "frontier.parquet")["cell_id"])


def test_a_result_below_zero_rate_is_named_as_broken(ledger, rdsweep):
    """The table's bound on R holds for results too: the file is named, not the table collect would write."""
    _, experiment, cells = ledger
    path = experiment.result_path(cells[1].cell_id)
    result = json.loads(path.read_text())
    result["splits"]["valid"]["rate"] = -2.0
    path.write_text(json.dumps(result))
    before = snapshot(experiment.path)
    refused(rdsweep("collect", experiment.path), path, "below 0")
    assert snapshot(experiment.path) == before
