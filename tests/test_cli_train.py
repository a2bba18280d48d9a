"""`rdsweep train` as a user runs it: the result table and JSON, and one clear line + exit 2 per mistake."""
import json
import inspect
import re
import subprocess
import sys

import pytest

from rdsweep.cli import main


def run(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["rdsweep", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def test_toy_prints_and_writes_the_exact_truth(monkeypatch, capsys, tmp_path):
    path = tmp_path / "result.json"
    code, out, err = run(monkeypatch, capsys, "train", "--dataset", "toy", "--epochs", "2",
                         "--batch-size", "500", "--json", str(path))
    assert code == 0, err
    result = json.loads(path.read_text())
    assert result["cell"]["family"] == "toy"  # the dataset's own model when --family is not given
    assert result["truth"]["mutual_information"] == pytest.approx(0.5)
    assert f"H = {result['truth']['entropy']:.4f}" in out
    for m in result["splits"].values():
        assert m["elbo"] == -(m["rate"] + m["distortion"])


def test_lingauss_prints_the_closed_form(monkeypatch, capsys):
    code, out, err = run(monkeypatch, capsys, "train", "--dataset", "lingauss", "--beta", "2",
                         "--epochs", "1", "--batch-size", "1000")
    assert code == 0, err
    assert "closed form" in out


def test_paper_code_needs_the_equals_form_and_works_with_it(monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, "train", "--dataset", "toy", "--family=---", "--epochs", "1")
    assert code == 2 and "models image data" in err


@pytest.mark.parametrize("args, message", [
    (["--dataset", "cifar"], "unknown dataset 'cifar'"),
    (["--family", "gauss-wavenet-normal"], "unknown family 'gauss-wavenet-normal'"),
    (["--beta", "0"], "beta must be a finite number > 0"),
    (["--beta", "-1"], "beta must be a finite number > 0"),
    (["--beta", "abc"], "Invalid value for '--beta'"),
    (["--beta", "nan"], "beta must be a finite number > 0"),
    (["--objective", "target-rate"], "needs --target-rate"),
    (["--target-rate", "-2"], "target rate must be a finite number ≥ 0"),
    (["--epochs", "0"], "epochs must be a positive integer"),
    (["--size", "huge"], "Invalid value for '--size'"),
    (["--device", "floppy"], "unknown device 'floppy'"),
    (["--dataset", "toy", "--images", "grid.png"], "image grids need image data"),
])
def test_bad_options_exit_2_with_one_line(monkeypatch, capsys, tmp_path, args, message):
    path = tmp_path / "out.json"
    monkeypatch.chdir(tmp_path)
    code, out, err = run(monkeypatch, capsys, "train", *args, "--json", str(path))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("rdsweep: error: ") and message in err, err
    assert not path.exists() and not (tmp_path / "grid.png").exists()


def test_launch_mistakes_found_before_ray_starts_exit_2(monkeypatch, capsys, tmp_path):
    """Damaged ledger files, a storage path that is a file, more than one GPU per trial: one line, exit 2."""
    spec = tmp_path / "toy.toml"
    spec.write_text('dataset = "toy"\nfamilies = ["toy"]\nseeds = [0]\n[budget]\nepochs = 1\n'
                    '[[objective]]\nkind = "beta"\nvalues = [1.0]\n')
    experiment = tmp_path / "results" / "toy"
    (experiment / "cells").mkdir(parents=True)
    (experiment / "experiment.json").write_text('{"protocol": ')
    code, _, err = run(monkeypatch, capsys, "launch", str(spec), "--storage", str(tmp_path / "results"), "--dry-run")
    assert code == 2 and err.count("\n") == 1 and "cannot read experiment record" in err, err
    (experiment / "experiment.json").unlink()
    from rdsweep.spec import load_spec
    (cell,) = load_spec(spec).cells()
    (experiment / "cells" / f"{cell.cell_id}.json").write_text("{truncated")
    code, _, err = run(monkeypatch, capsys, "launch", str(spec), "--storage", str(tmp_path / "results"), "--dry-run")
    assert code == 2 and err.count("\n") == 1 and "cannot read trial result" in err, err
    assert (experiment / "cells" / f"{cell.cell_id}.json").read_text() == "{truncated"  # left as it was

    (tmp_path / "afile").write_text("precious")
    code, _, err = run(monkeypatch, capsys, "launch", str(spec), "--storage", str(tmp_path / "afile"))
    assert code == 2 and "is not a directory" in err, err
    assert (tmp_path / "afile").read_text() == "precious"
    code, _, err = run(monkeypatch, capsys, "launch", str(spec), "--storage", str(tmp_path / "r2"),
                       "--gpus-per-trial", "2", "--dry-run")
    assert code == 2 and "gpus_per_trial" in err, err


def write_amat(directory, rows, width=784):
    directory.mkdir()
    for split in ("train", "valid", "test"):
        (directory / f"binarized_mnist_{split}.amat").write_text(
            "".join(" ".join(["0", "1"] * (width // 2)) + "\n" for _ in range(rows)))


def test_bad_data_exits_2_and_writes_nothing(monkeypatch, capsys, tmp_path):
    cache = tmp_path / "cache"
    monkeypatch.setenv("RDSWEEP_CACHE", str(cache))
    out_json = tmp_path / "out.json"
    narrow = tmp_path / "narrow"
    write_amat(narrow, rows=3, width=780)
    nonbinary = tmp_path / "nonbinary"
    write_amat(nonbinary, rows=3)
    test_file = nonbinary / "binarized_mnist_test.amat"
    test_file.write_text(test_file.read_text().replace("1", "2", 1))
    idx = tmp_path / "idx"
    idx.mkdir()
    (idx / "train-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 28, 0, 0, 0, 28]) + b"\0" * 100)
    (idx / "t10k-images-idx3-ubyte").write_bytes((idx / "train-images-idx3-ubyte").read_bytes())
    cases = [
        (f"amat:{tmp_path / 'nowhere'}", "nowhere"),
        (f"idx:{tmp_path / 'nowhere'}", "nowhere"),
        (f"amat:{narrow}", "780"),
        (f"amat:{nonbinary}", "line 1"),
        (f"idx:{idx}", "truncated"),
    ]
    for dataset, message in cases:
        code, _, err = run(monkeypatch, capsys, "train", "--dataset", dataset, "--json", str(out_json))
        assert code == 2 and err.count("\n") == 1 and message in err, (dataset, err)
    assert not out_json.exists() and not cache.exists()


def test_console_script_end_to_end(tmp_path):
    """The installed command, as a new user runs it: help lists the commands, train prints a table."""
    exe = [sys.executable, "-m", "rdsweep"]
    help_ = subprocess.run([*exe, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("train", "families"):
        assert command in help_
    done = subprocess.run([*exe, "train", "--dataset", "toy", "--epochs", "1", "--json", str(tmp_path / "r.json")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "−ELBO" in done.stdout and (tmp_path / "r.json").exists()
    bad = subprocess.run([*exe, "train", "--beta", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    # A kept model is never overwritten: the second run is refused before it trains, the file unchanged.
    kept = tmp_path / "toy.pt"
    kept.write_bytes(b"an earlier model")
    again = subprocess.run([*exe, "train", "--dataset", "toy", "--epochs", "1", "--keep-model", str(kept)],
                           capture_output=True, text=True)
    assert again.returncode == 2 and "does not overwrite" in again.stderr and again.stderr.count("\n") == 1
    assert kept.read_bytes() == b"an earlier model" and "training" not in again.stdout


def test_help_texts_show_no_value_after_flags_and_no_stray_spaces(rdsweep):
    """Flags take no value, so their help shows none; removed defaults leave no "text ." behind."""
    for command in ([], ["launch"], ["train"], ["collect"], ["frontier"], ["curves"], ["status"], ["bench"]):
        shown = rdsweep(*command, "--help")
        assert shown.returncode == 0, shown.stderr
        assert "<bool>" not in shown.stdout, command
        assert not re.search(r"\w \.(\s|$)", shown.stdout), command   # "Folder of experiments ." 


def test_a_help_paragraph_prints_as_one_line_on_a_wide_terminal(rdsweep):
    # the docstrings' own line breaks showed inside rich's wrapping ("failed with their error," then a break)
    from rdsweep import cli

    for name in ("launch", "status", "select", "bench", "frontier", "curves"):
        shown = rdsweep(name, "--help", env={"COLUMNS": "1000"})
        paragraphs = inspect.cleandoc(getattr(cli, name).__doc__).split("\n\n")
        lines = {" ".join(line.strip(" │").split()) for line in shown.stdout.splitlines()}
        for paragraph in paragraphs:
            assert " ".join(paragraph.split()) in lines, (name, paragraph)


def test_bench_mistakes_exit_2_before_anything_runs(rdsweep, tmp_path):
    """bench --sweep --keep names a new directory: an existing one is refused and left as it was; --compile
    times image families only; an unknown family is named. Each is one line on stderr and exit status 2."""
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.txt").write_text("a user's file")
    for args, said in ((["--sweep", "examples/toy.toml", "--keep", kept], "exists"),
                       (["--compile", "toy"], "image families"),
                       (["--compile", "no-such-family"], "no-such-family")):
        done = rdsweep("bench", *args, timeout=120)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and said in done.stderr, (args, done.stderr)
    assert [p.name for p in kept.iterdir()] == ["mine.txt"] and (kept / "mine.txt").read_text() == "a user's file"


def test_bench_times_collect_over_synthetic_results(rdsweep):
    """Its results must pass the checks every result passes (R and D ≥ 0): they once did not, and it crashed."""
    done = rdsweep("bench", "--collect-cells", "40", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "collect: 40 cell results -> 120 rows" in " ".join(done.stdout.split()), done.stdout


def test_a_result_no_trial_can_produce_fails_the_train_with_one_line_and_writes_nothing(monkeypatch, capsys,
                                                                                        tmp_path):
    """R far below 0 is numbers gone wrong, not the user's mistake: exit 1, one line, no --json or kept model.
    The evaluation is the real one, with its valid rate then set to −2 nats."""
    from rdsweep.training import trainer

    real = trainer.final_evaluation

    def gone_wrong(*args, **kwargs):
        splits, finite = real(*args, **kwargs)
        splits["valid"]["rate"] = -2.0
        return splits, finite

    monkeypatch.setattr(trainer, "final_evaluation", gone_wrong)
    out, kept = tmp_path / "r.json", tmp_path / "kept.pt"
    monkeypatch.setattr(sys, "argv", ["rdsweep", "train", "--dataset", "toy", "--epochs", "1", "--batch-size", "500",
                                      "--json", str(out), "--keep-model", str(kept)])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and err.count("\n") == 1, err
    assert err.startswith("rdsweep: error: not a valid trial result: ") and "below 0" in err, err
    assert list(tmp_path.iterdir()) == []
