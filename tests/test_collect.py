"""collect: ledger results on disk → the frontier table (schema, ELBO identity, determinism, merging, errors)."""
import pyarrow.parquet as pq
import pytest

from rdsweep.analysis.collect import SCHEMA, collect
from rdsweep.cells import Cell
from rdsweep.errors import UserError
from rdsweep.sweep.ledger import Experiment
from rdsweep.training.result import cell_result


def fake_result(cell: Cell, status="converged", rate=5.0, distortion=90.0, entropy=None) -> dict:
    splits = {s: {"rate": rate + i * 0.1, "distortion": distortion + i, "elbo": -(rate + distortion), "iwae": None}
              for i, s in enumerate(("train", "valid", "test"))}
    if status != "converged":
        splits = {s: {"rate": None, "distortion": None, "elbo": None, "iwae": None} for s in splits}
    return {"cell": cell.to_dict(), "cell_id": cell.cell_id, "status": status, "epochs": cell.epochs,
            "wall_s": 1.5, "device": "cpu", "rdsweep_version": "0.1.0", "splits": splits,
            "truth": {} if entropy is None else {"entropy": entropy, "mutual_information": 0.5}, "history": [],
            **({"error": "RuntimeError: out of memory"} if status == "failed" else {})}


def make_experiment(root, name, cells_and_status):
    experiment = Experiment(root / name)
    for cell, status in cells_and_status:
        experiment.write_result(cell_result(fake_result(cell, status, rate=cell.beta or 1.0)))
    return experiment


def cells(**common):
    return [Cell(family=f, beta=b, seed=s, **common).validated()
            for f in ("---", "-+v") for b in (0.3, 1.0) for s in (0, 1)]


def test_rows_schema_and_elbo_identity(tmp_path):
    cs = cells()
    statuses = ["converged"] * 6 + ["diverged", "failed"]
    experiment = make_experiment(tmp_path, "quick", zip(cs, statuses))
    out, table = collect([experiment.path])
    assert out == experiment.path / "frontier.parquet"
    assert table.num_rows == 8 * 3
    assert pq.read_schema(out).remove_metadata().equals(SCHEMA)
    rows = table.to_pylist()
    assert {r["split"] for r in rows} == {"train", "valid", "test"}
    for r in rows:
        if r["status"] == "converged":
            assert r["elbo"] == -(r["rate"] + r["distortion"])  # exactly, not approximately
        else:
            assert r["rate"] is None and r["elbo"] is None
    assert {r["family"] for r in rows} == {"gauss-deconv-normal", "gauss-pixelcnn-vamp"}
    assert {r["paper_code"] for r in rows} == {"---", "-+v"}
    assert all(r["true_entropy"] is None and r["experiment"] == "quick" for r in rows)


def test_true_entropy_and_null_paper_code_on_toy(tmp_path):
    experiment = Experiment(tmp_path / "toy")
    cell = Cell(dataset="toy", family="toy", beta=1.0).validated()
    experiment.write_result(cell_result(fake_result(cell, rate=0.4, distortion=2.7, entropy=3.0184)))
    _, table = collect([experiment.path])
    assert table.column("true_entropy").to_pylist() == [3.0184] * 3
    assert table.column("paper_code").null_count == 3


def test_probe_accuracy_from_before_0_4_is_left_out(tmp_path):
    # 0.3 fit its probe on posterior means (a collapsed encoder read 0.89): one column, one meaning.
    experiment = Experiment(tmp_path / "mnist")
    old, new, dev = (Cell(family="---", beta=b).validated() for b in (0.3, 1.0, 3.0))
    for cell, version in ((old, "0.3.0"), (new, "0.4.0"), (dev, "0.4.dev1")):
        result = fake_result(cell)
        result["rdsweep_version"] = version
        for metrics in result["splits"].values():
            metrics.update(probe_accuracy=0.9, active_units=3)
        experiment.write_result(cell_result(result))
    rows = collect([experiment.path])[1].to_pylist()
    probe = {r["beta"]: r["probe_accuracy"] for r in rows if r["split"] == "test"}
    assert probe == {0.3: None, 1.0: 0.9, 3.0: 0.9}
    assert all(r["active_units"] == 3 for r in rows)  # the other latent columns did not change meaning


def test_collecting_twice_gives_the_same_bytes(tmp_path):
    experiment = make_experiment(tmp_path, "quick", [(c, "converged") for c in cells()])
    out, _ = collect([experiment.path])
    first = out.read_bytes()
    out, _ = collect([experiment.path])
    assert out.read_bytes() == first
    assert [p.name for p in experiment.path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_merging_experiments_needs_an_out_path(tmp_path):
    a = make_experiment(tmp_path, "a", [(c, "converged") for c in cells()[:2]])
    b = make_experiment(tmp_path, "b", [(c, "converged") for c in cells()[2:5]])
    with pytest.raises(UserError, match="needs --out"):
        collect([a.path, b.path])
    out, table = collect([a.path, b.path], tmp_path / "merged.parquet")
    assert table.num_rows == 5 * 3
    assert table.column("experiment").to_pylist()[:3] == ["a"] * 3
    assert sorted(set(table.column("experiment").to_pylist())) == ["a", "b"]


def test_bad_inputs_raise_and_overwrite_nothing(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        collect([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no trial results"):
        collect([tmp_path / "empty"])
    experiment = make_experiment(tmp_path, "quick", [(c, "converged") for c in cells()])
    out, _ = collect([experiment.path])
    before = out.read_bytes()
    experiment.result_path("0" * 16).write_text("{not json")
    with pytest.raises(UserError, match="cannot read trial result"):
        collect([experiment.path])
    assert out.read_bytes() == before


def test_cli_collect_exit_status_2_on_empty_or_missing(tmp_path, rdsweep):
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "empty", tmp_path / "missing"):
        done = rdsweep("collect", target)
        assert done.returncode == 2
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("rdsweep: error:")
    assert list((tmp_path / "empty").iterdir()) == []


def test_a_path_that_is_not_utf8_is_read_and_a_name_that_is_not_is_refused(tmp_path, rdsweep):
    """A directory with a Latin-1 byte, decoded as a lone surrogate, reaches a result's warnings (its
    checkpoint's path) and Python's json writes it as an escape that pydantic's JSON parser refuses: the
    result must still read. As the experiment's own name it would go into the Parquet table, which holds
    only UTF-8: one line and exit 2, nothing written."""
    import os

    from rdsweep.bench import write_fake_experiment

    latin1 = tmp_path / os.fsdecode(b"caf\xe9")
    experiment = write_fake_experiment(latin1 / "sweep", 3)
    first = experiment.results()[0]
    experiment.write_result(first.model_copy(update={
        "warnings": [f"cell {first.cell_id}: its checkpoint {experiment.checkpoints_dir} was unusable"]}))
    done = rdsweep("collect", experiment.path)
    assert done.returncode == 0, done.stderr
    with open(experiment.path / "frontier.parquet", "rb") as table:
        assert pq.read_table(table).num_rows == 9
    shown = rdsweep("frontier", experiment.path / "frontier.parquet")   # read back by rdsweep itself
    assert shown.returncode == 0, shown.stderr

    named = write_fake_experiment(latin1 / os.fsdecode(b"r\xe9sum\xe9"), 2)
    refused = rdsweep("collect", named.path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "b'r\\xe9sum\\xe9' is not UTF-8" in refused.stderr and not (named.path / "frontier.parquet").exists()
