"""`rdsweep select`: the cell each model-selection criterion picks, and the ELBO price of a useful latent.

The tests run the console script on a small synthetic frontier table: the seed-003 situation, where the
best-ELBO model is a collapsed PixelCNN (R ≈ 0, probe at chance) and the models with a useful latent cost ELBO;
the last ones on the committed mnist5k table, against the answers docs/selection.md quotes.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from rdsweep.analysis.collect import SCHEMA
from rdsweep.analysis.select import select, tied_lines
from rdsweep.errors import UserError

CODES = {"gauss-deconv-normal": "---", "gauss-pixelcnn-normal": "-+-"}

# family, objective, β or σ, status, valid (R, D, probe), test (R, D, probe). ELBO = −(R + D).
CELLS = [
    # The collapsed auto-decoder: the best valid ELBO (−80.1), probe at chance for 10 digits.
    ("gauss-pixelcnn-normal", "beta", 1.0, "converged", (0.1, 80.0, 0.11), (0.1, 80.5, 0.10)),
    ("gauss-pixelcnn-normal", "beta", 0.3, "converged", (12.0, 71.0, 0.90), (12.1, 71.4, 0.89)),
    ("gauss-pixelcnn-normal", "target-rate", 20.0, "converged", (20.5, 66.0, 0.93), (20.4, 66.6, 0.92)),
    # Better valid ELBO than any converged cell, but still improving at the cap.
    ("gauss-pixelcnn-normal", "beta", 3.0, "unconverged", (0.0, 79.0, 0.10), (0.0, 79.2, 0.10)),
    ("gauss-deconv-normal", "beta", 1.0, "converged", (25.0, 62.0, 0.92), (25.2, 62.3, 0.91)),
    # The most useful latent of the table: the highest probe accuracy, 11.9 nats of valid ELBO below the best.
    ("gauss-deconv-normal", "beta", 0.3, "converged", (40.0, 52.0, 0.95), (40.3, 52.2, 0.96)),
]


def rows_of(cells, iwae=False, probe=True):
    rows = []
    for family, objective, value, status, valid, test in cells:
        for split, (rate, distortion, accuracy) in (("train", valid), ("valid", valid), ("test", test)):
            row = dict.fromkeys(SCHEMA.names)
            row.update(cell_id=f"{CODES[family]}{objective}{value}", experiment="e", dataset="mnist5k",
                       family=family, paper_code=CODES[family], objective=objective,
                       beta=value if objective == "beta" else None,
                       target_rate=value if objective == "target-rate" else None, seed=0, size="small",
                       split=split, rate=rate, distortion=distortion, elbo=-(rate + distortion),
                       iwae=-(rate + distortion) + 1.0 if iwae else None,
                       mutual_info=min(rate, 6.2), marginal_kl=rate - min(rate, 6.2),
                       active_units=int(rate // 2), probe_accuracy=accuracy if probe else None, status=status)
            rows.append(row)
    return rows


def write(path, rows):
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path)  # SCHEMA carries collect's table mark
    return path


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return write(tmp_path_factory.mktemp("select") / "frontier.parquet", rows_of(CELLS))


@pytest.fixture(scope="module")
def default_json(table):
    """`rdsweep select TABLE --json`, run once for the tests that read it (each run is a second of start-up)."""
    return run_rdsweep("select", table, "--json")


@pytest.fixture(scope="module")
def text(table):
    """The rich output with two target rates: one no cell reaches, one every cell reaches."""
    done = run_rdsweep("select", table, "--report-split", "valid", "--rate", "100", "--rate", "0")
    assert done.returncode == 0, done.stderr
    return " ".join(done.stdout.split())


def run_rdsweep(*args):
    """The console script as the `rdsweep` fixture (tests/conftest.py) runs it, for the module's shared runs."""
    return subprocess.run([str(Path(sys.executable).parent / "rdsweep"), *map(str, args)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})


def picks(done) -> dict:
    assert done.returncode == 0, done.stderr
    return {(p["criterion"], p["min_rate"], p["scope"]): p for p in json.loads(done.stdout)}


def test_best_elbo_picks_the_collapsed_model_and_the_probe_prices_a_useful_latent(default_json, text):
    found = picks(default_json)
    # Default criteria: valid-elbo and probe-accuracy; no IWAE values, so no iwae criterion.
    assert {k[0] for k in found} == {"valid-elbo", "probe-accuracy"}
    elbo, probe = found[("valid-elbo", None, "overall")], found[("probe-accuracy", None, "overall")]
    assert (elbo["family"], elbo["beta"], elbo["regime"]) == ("gauss-pixelcnn-normal", 1.0, "auto-decoder")
    assert elbo["score"] == pytest.approx(-80.1) and elbo["probe_accuracy"] == pytest.approx(0.10)  # test
    assert (probe["family"], probe["beta"]) == ("gauss-deconv-normal", 0.3)
    assert probe["score"] == pytest.approx(0.95) and probe["probe_accuracy"] == pytest.approx(0.96)
    assert probe["judged_on"] == "valid" and probe["reported_on"] == "test"
    assert probe["rate"] == pytest.approx(40.3) and probe["elbo"] == pytest.approx(-92.5)  # test numbers
    assert probe["elbo_given_up"] == pytest.approx(elbo["elbo"] - probe["elbo"]) == pytest.approx(11.9)
    assert elbo["candidates"] == 5  # the unconverged cell is not one
    # Per family: in the PixelCNN family the σ = 20 model probes best (0.93 against 0.90 at β = 0.3).
    fam = found[("probe-accuracy", None, "gauss-pixelcnn-normal")]
    assert (fam["objective"], fam["target_rate"], fam["setting"]) == ("target-rate", 20.0, "σ=20")
    assert fam["elbo_given_up"] == pytest.approx(87.0 - 80.6)
    assert found[("valid-elbo", None, "gauss-deconv-normal")]["beta"] == 1.0

    assert "A useful latent costs 11.90 nats of valid ELBO: the probe-accuracy pick" in text
    assert "auto-decoder" in text
    # per family: one table, each family's rows under its paper code, named once; the criteria that pick one
    # cell share its row (valid-elbo and rate ≥ 0 here), and those that pick none share a "none" row
    per_family = text.split("per family (paper code): the cells the criteria pick")[1].split("A useful latent")[0]
    assert per_family.count("-+- ") == per_family.count("--- ") == 1
    assert "(elbo=valid-elbo, probe=probe-accuracy, R≥σ=rate≥σ)" in per_family
    assert "-+- elbo R≥0 β=1 0.10 -80.10 auto-decoder" in per_family
    assert "probe σ=20 20.50 -86.50 syntactic 6.20 10 0.930 6.40" in per_family
    assert per_family.count("R≥100 none") == 2


def test_on_a_narrow_terminal_names_wrap_and_numbers_stay_whole(table, tmp_path, rdsweep):
    done = rdsweep("select", table, "--rate", "100", "--rate", "0", "--probe", "0.5", env={"COLUMNS": "60"})
    assert done.returncode == 0, done.stderr
    # drawn 80 wide (the terminal wraps the lines), not squeezed: every column is there, every number whole
    assert "…" not in done.stdout and done.stdout.count("I(x;z) AU probe") == 2 and "code picked by" in done.stdout
    text = " ".join(done.stdout.split())
    assert "probe-accuracy --- β=0.3 40.30 -92.50 syntactic 6.20 20 0.960 11.90" in text   # no D (= −ELBO − R)
    assert "probe σ=20 20.40 -87.00 syntactic 6.20 10 0.920 6.40" in text
    # five criteria that pick one cell do not fit the names' column: they go on, indented, on the next line,
    # which does not read as a row of its own (a criterion without a pick)
    many = rdsweep("select", table, *[a for r in (0, 1, 2, 3, 5) for a in ("--rate", r)], "--probe", "0.5",
                   env={"COLUMNS": "80"})
    assert many.returncode == 0, many.stderr
    lines = many.stdout.splitlines()
    assert max(map(len, lines)) <= 80
    start = next(line for line in lines if line.startswith("code picked by")).index("picked by")
    first = next(i for i, line in enumerate(lines) if line.startswith("---  elbo R≥0"))
    assert lines[first][start:].split()[:2] == ["elbo", "R≥0"] and "β=1" in lines[first]
    go_on = lines[first + 1]
    assert go_on[:start + 2].strip() == "" and go_on[start + 2] != " " and go_on.split()[-1] == "p≥0.5"
    assert lines[first + 2][start:].split()[:2] == ["probe", "β=0.3"]
    # two seeds and an IWAE bound need more than 80 columns: the output grows to fit them
    rows = rows_of(CELLS, iwae=True)
    path = write(tmp_path / "seeds.parquet", rows + [{**r, "seed": 1, "cell_id": r["cell_id"] + "s1"} for r in rows])
    wide = rdsweep("select", path, env={"COLUMNS": "80"})
    assert wide.returncode == 0, wide.stderr
    text = " ".join(wide.stdout.split())
    assert "AU probe cost" in text and "probe-accuracy --- β=0.3 0 40.30 -92.50 -91.50 syntactic 6.20 20 0.960 11.90" in text


def test_unconverged_cells_are_ignored_unless_asked_for(table, default_json, rdsweep):
    assert picks(default_json)[("valid-elbo", None, "overall")]["beta"] == 1.0
    found = picks(rdsweep("select", table, "--json", "--include-unconverged", "--by", "valid-elbo"))
    assert list({k[0] for k in found}) == ["valid-elbo"]
    best = found[("valid-elbo", None, "overall")]
    assert (best["beta"], best["status"], best["candidates"]) == (3.0, "unconverged", 6)


def test_target_rate_picks_the_best_elbo_at_or_above_it_on_the_judging_split(table, text, rdsweep):
    # At σ = 12.05 the PixelCNN β = 0.3 model qualifies on test (R 12.1) but not on valid (R 12.0).
    found = picks(rdsweep("select", table, "--json", "--rate", "12.05", "--rate", "100", "--by", "valid-elbo"))
    pick = found[("rate", 12.05, "overall")]
    assert (pick["objective"], pick["target_rate"], pick["candidates"]) == ("target-rate", 20.0, 3)
    assert pick["judged_rate"] == pytest.approx(20.5) and pick["score"] == pytest.approx(-86.5)
    assert found[("rate", 12.05, "gauss-deconv-normal")]["beta"] == 1.0
    none = found[("rate", 100.0, "overall")]
    assert none["cell_id"] is None and none["candidates"] == 0
    assert "no cell reaches R ≥ 100 nats on the valid split (the highest is 40.00)" in none["note"]

    assert "rate ≥ 100: no cell reaches R ≥ 100 nats" in text and "not on offer" in text
    # R ≥ 0 admits every cell: the cheapest latent is the valid-elbo pick itself.
    assert "The valid-elbo pick is also the rate ≥ 0 pick" in text


def test_a_probe_to_reach_picks_the_best_elbo_among_the_cells_that_reach_it(table, rdsweep):
    # probe ≥ 0.92 on valid admits σ = 20 (0.93, ELBO −86.5), --- β = 1 (0.92, −87.0) and --- β = 0.3 (0.95,
    # −92.0): the cheapest such latent is σ = 20, at 6.4 nats of test ELBO, where the highest probe costs 11.9
    done = rdsweep("select", table, "--json", "--probe", "0.92", "--by", "valid-elbo")
    found = {(p["criterion"], p["min_probe"], p["scope"]): p for p in picks(done).values()}
    pick = found[("probe", 0.92, "overall")]
    assert (pick["objective"], pick["target_rate"], pick["candidates"]) == ("target-rate", 20.0, 3)
    assert pick["score"] == pytest.approx(-86.5) and pick["elbo_given_up"] == pytest.approx(6.4)
    assert found[("probe", 0.92, "gauss-deconv-normal")]["beta"] == 1.0     # 0.92 itself qualifies
    done = rdsweep("select", table, "--probe", "0.96", "--probe", "0.92")
    text = " ".join(done.stdout.split())
    assert done.returncode == 0, done.stderr
    assert "A latent whose probe names the label at least 0.92 of the time costs 6.40 nats of test ELBO" in text
    assert "probe ≥ 0.96: no cell's probe accuracy reaches 0.96 on the valid split (the highest is 0.950)" in text


def test_a_picks_regime_is_its_settings_in_frontier(tmp_path):
    """Two seeds of β = 0.3 at R 8.7 and 9.3: frontier's semantic bound is their mean, 9.0. The seed that
    `--probe 0.8` picks sits above it, and is still called what frontier calls its setting: semantic."""
    cells = [("gauss-pixelcnn-normal", "beta", 1.0, "converged", (0.01, 81.0, 0.10), (0.01, 81.0, 0.10)),
             ("gauss-pixelcnn-normal", "beta", 0.3, "converged", (8.7, 74.0, 0.84), (8.7, 74.0, 0.84)),
             ("gauss-pixelcnn-normal", "beta", 0.3, "converged", (9.3, 72.0, 0.85), (9.3, 72.0, 0.85)),
             ("gauss-pixelcnn-normal", "beta", 0.1, "converged", (25.0, 68.0, 0.93), (25.0, 68.0, 0.93))]
    rows = rows_of(cells)
    for i, row in enumerate(rows):   # the two β = 0.3 cells are seeds 0 and 1 of one setting
        row["seed"] = 1 if i // 3 == 2 else 0
        row["cell_id"] += str(row["seed"])
    path = write(tmp_path / "t.parquet", rows)
    pick = next(p for p in select(path, probes=[0.8]).picks if p["criterion"] == "probe" and p["scope"] == "overall")
    assert (pick["beta"], pick["seed"], pick["rate"]) == (0.3, 1, 9.3)
    assert pick["regime"] == "semantic"
    from rdsweep.analysis.frontier import analyse, read_table
    points = analyse(read_table(path)).points.set_index("beta")
    assert points.loc[0.3, "rate"] == pytest.approx(9.0) and points.loc[0.3, "regime"] == "semantic"


def test_ties_go_to_the_first_cell_in_collects_order(tmp_path):
    cells = [("gauss-deconv-normal", "beta", b, "converged", v, v)
             for b, v in ((2.0, (2.0, 79.0, 0.5)), (0.5, (1.0, 80.0, 0.6)), (1.0, (3.0, 79.0, 0.6)))]
    path = write(tmp_path / "t.parquet", rows_of(cells[::-1], iwae=True))  # file order: the reverse of the rule
    selection = select(path)
    found = {p["criterion"]: p for p in selection.picks if p["scope"] == "overall"}
    assert list(found) == ["valid-elbo", "iwae", "probe-accuracy"]
    # β = 0.5 and β = 2 share ELBO −81 (IWAE −80) exactly; β = 0.5 and β = 1 share probe 0.6: lower β first.
    assert found["valid-elbo"]["beta"] == found["iwae"]["beta"] == found["probe-accuracy"]["beta"] == 0.5
    assert found["iwae"]["iwae"] == pytest.approx(-80.0)


@pytest.mark.parametrize("args, message", [
    (["--by", "probe-accuracy"], "--by probe-accuracy: no cell of .* has a probe accuracy .*no labels"),
    (["--by", "best"], "unknown criterion 'best': use valid-elbo, iwae, probe-accuracy"),
    (["--probe", "0.8"], "--probe: no cell of .* has a probe accuracy"),
    (["--probe", "80"], "--probe must be an accuracy between 0 and 1, got 80"),
    (["missing"], "frontier table .*missing.parquet does not exist"),
    (["a directory"], "frontier table .* is not a file"),
])
def test_user_mistakes_exit_2_with_one_line(tmp_path, rdsweep, args, message):
    path = write(tmp_path / "frontier.parquet", rows_of(CELLS, probe=False))
    if args == ["missing"]:
        path, args = tmp_path / "missing.parquet", []
    if args == ["a directory"]:  # a path that exists but is no table (the case /dev/null was misnamed as)
        path, args = tmp_path, []
    done = rdsweep("select", path, *args)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and re.search(message, done.stderr), done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frontier.parquet"]  # nothing written


def test_tables_and_criteria_that_cannot_be_judged(tmp_path):
    # In process (the CLI turns each UserError into one line and exit 2, as the test above shows).
    path = write(tmp_path / "frontier.parquet", rows_of(CELLS, probe=False))
    with pytest.raises(UserError, match="--by iwae: no cell of .* has an IWAE bound .*iwae_k > 0"):
        select(path, by=["iwae"])
    with pytest.raises(UserError, match="--rate must be a finite number of nats ≥ 0, got -1"):
        select(path, rates=[-1.0])
    with pytest.raises(UserError, match="no 'train' split"):
        select(write(tmp_path / "v.parquet", [r for r in rows_of(CELLS) if r["split"] != "train"]), split="train")
    pq.write_table(pa.table({"x": [1]}), tmp_path / "other.parquet")
    with pytest.raises(UserError, match="is not a frontier table"):
        select(tmp_path / "other.parquet")
    rows = rows_of([c[:3] + ("unconverged",) + c[4:] for c in CELLS])
    with pytest.raises(UserError, match="no converged cells.*6 unconverged cells.*--include-unconverged"):
        select(write(tmp_path / "u.parquet", rows))


def test_ties_it_cannot_judge_say_why(tmp_path):
    """Cells with standard errors (rdsweep >= 0.5) have their valid-ELBO ties judged; their IWAE bound carries
    none, so its ties are not judged, and the line says it is the bound, not the cells' age."""
    rows = [{**r, "rate_se": 0.1, "distortion_se": 1.0, "elbo_se": 1.0} for r in rows_of(CELLS, iwae=True)]
    lines = tied_lines(select(write(tmp_path / "t.parquet", rows), by=["valid-elbo", "iwae"]))
    assert not any(line.startswith("valid-elbo: ties not judged") for line in lines)
    iwae = [line for line in lines if line.startswith("iwae: ties not judged")]
    assert len(iwae) == 1 and "IWAE bound's error" in iwae[0] and "before rdsweep 0.5" not in iwae[0]
    old = tied_lines(select(write(tmp_path / "old.parquet", rows_of(CELLS)), by=["valid-elbo"]))
    assert any(line.startswith("valid-elbo: ties not judged") and "before rdsweep 0.5" in line for line in old)


def test_without_probe_values_the_default_skips_it_and_says_how_to_price_a_latent(tmp_path, rdsweep):
    path = write(tmp_path / "frontier.parquet", rows_of(CELLS, probe=False))
    done = rdsweep("select", path)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "probe-accuracy" not in text.split("To price")[0]
    assert "add --rate SIGMA (this table has no probe accuracy)" in text


@pytest.mark.parametrize("command, objective", [
    ("rdsweep select beta.parquet --probe 0.8", "beta"),   # seed 003 among the β: the page's first quote
    ("rdsweep select docs/studies/mnist5k/frontier.parquet --rate 5 --rate 20 --probe 0.8", None),
    ("rdsweep select docs/studies/mnist5k/frontier.parquet --by-setting --probe 0.8", None),   # with its errors
])
def test_the_mnist5k_answer_quoted_in_the_docs_is_what_select_prints(command, objective, rdsweep, tmp_path):
    """docs/selection.md answers seed 003 by quoting `select` on the committed study table: each quote must be
    what the command prints there today (an 80-column terminal), so the answer cannot drift from the data."""
    root = Path(__file__).resolve().parents[1]
    cwd = root
    if objective is not None:   # the page's filter: the cells of one objective, in a file of that name
        table = pq.read_table(root / "docs" / "studies" / "mnist5k" / "frontier.parquet")
        pq.write_table(table.filter(pc.equal(table["objective"], objective)), tmp_path / f"{objective}.parquet")
        cwd = tmp_path
    doc = (root / "docs" / "selection.md").read_text()
    block = f"    {command}\n\n"   # the command as the page shows it, then its output, indented alike
    after = doc[doc.index(block) + len(block):]
    quoted = []
    for line in after.splitlines():
        if line and not line.startswith("    "):
            break
        quoted.append(line[4:])
    printed = rdsweep(*command.split()[1:], cwd=cwd, env={"COLUMNS": "80"})
    assert printed.returncode == 0, printed.stderr
    assert [line.rstrip() for line in printed.stdout.strip().splitlines()] == \
        [line.rstrip() for line in "\n".join(quoted).strip().splitlines()]
