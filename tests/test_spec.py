"""Sweep specs: the example files, grid expansion, CLI overrides, stable cell ids, and one clear error each."""
from pathlib import Path

import pytest

from rdsweep.errors import SpecError
from rdsweep.models.families import IMAGE_FAMILIES
from rdsweep.spec import cli_overrides, load_spec

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

TOY = """
dataset = "toy"
families = ["toy"]
seeds = [0, 1]
[budget]
epochs = 2
batch_size = 500
lr = 0.01
[[objective]]
kind = "beta"
values = [0.5, 1, 2]
[[objective]]
kind = "target-rate"
values = [0.5]
"""


def write(tmp_path, text, name="spec.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_examples_load_and_expand(tmp_path):
    quick = load_spec(EXAMPLES / "quick.toml")
    assert {c.family for c in quick.cells()} == {f.name for f in IMAGE_FAMILIES}
    assert len(quick.cells()) == 12 * 2 and quick.base.size == "small"
    # make demo's: both decoders at β = 0.3 and 1, the deconv one at 3 too
    demo = [(c.family, c.beta) for c in load_spec(EXAMPLES / "demo.toml").cells()]
    assert demo == [("gauss-pixelcnn-normal", 0.3), ("gauss-pixelcnn-normal", 1.0), ("gauss-deconv-normal", 0.3),
                    ("gauss-deconv-normal", 1.0), ("gauss-deconv-normal", 3.0)]
    full = load_spec(EXAMPLES / "mnist.toml")
    assert full.base.dataset == "mnist" and {c.family for c in full.cells()} == {"gauss-deconv-normal",
                                                                                 "gauss-pixelcnn-normal"}

    toy = load_spec(EXAMPLES / "toy.toml")
    assert {c.objective for c in toy.cells()} == {"beta", "target-rate"}
    assert load_spec(EXAMPLES / "lingauss.toml").data_kind == "lingauss"

    # paper.toml names a placeholder directory: users point it at their .amat files
    paper = load_spec(EXAMPLES / "paper.toml", {"dataset": f"amat:{tmp_path}"})
    betas = sorted({c.beta for c in paper.cells()})
    assert betas[0] == 0.01 and betas[-1] == 10 and 1.0 in betas
    assert len(paper.cells()) == 12 * len(betas) * 3
    assert paper.base.size == "paper" and paper.base.schedule == "paper" and paper.resources.gpus_per_trial == 0.5
    assert paper.dataset == f"amat:{tmp_path.resolve()}"  # absolute: every Ray worker reads the same files


def test_cells_are_the_product_of_families_chained_objectives_and_seeds(tmp_path):
    spec = load_spec(write(tmp_path, TOY))
    cells = spec.cells()
    assert len(cells) == (3 + 1) * 2
    assert [(c.objective, c.beta, c.target_rate, c.seed) for c in cells[:2]] == [
        ("beta", 0.5, None, 0), ("beta", 0.5, None, 1)]
    assert all(c.epochs == 2 and c.batch_size == 500 and c.lr == 0.01 for c in cells)
    assert spec.resources.gpus_per_trial is None and spec.resources.cpus_per_trial == 1
    assert spec.resources.compile is False
    compiled = load_spec(write(tmp_path, TOY.replace("[budget]", "[resources]\ncompile = true\n[budget]")))
    assert compiled.resources.compile is True and compiled.cells() == cells  # how it runs, not which cells


def test_adding_a_beta_keeps_the_other_cell_ids(tmp_path):
    before = {c.cell_id for c in load_spec(write(tmp_path, TOY)).cells()}
    after = {c.cell_id for c in load_spec(write(tmp_path, TOY.replace("[0.5, 1, 2]", "[0.5, 1, 2, 4]"))).cells()}
    assert before < after and len(after - before) == 2  # one β × two seeds
    # the same value twice (1 and 1.0) is one cell
    dup = load_spec(write(tmp_path, TOY.replace("[0.5, 1, 2]", "[0.5, 1, 1.0, 2]"))).cells()
    assert {c.cell_id for c in dup} == before


def test_cli_overrides_replace_spec_fields(tmp_path):
    overrides = cli_overrides(seeds="3,4,5", epochs=7, gpus_per_trial="0.5", families=None, lr=None)
    spec = load_spec(write(tmp_path, TOY), overrides)
    assert spec.seeds == (3, 4, 5) and spec.base.epochs == 7 and spec.resources.gpus_per_trial == 0.5
    quick = load_spec(EXAMPLES / "quick.toml", cli_overrides(families="-+v,gauss-deconv-normal"))
    assert quick.families == ("gauss-pixelcnn-vamp", "gauss-deconv-normal")


@pytest.mark.parametrize("change, message", [
    (("[\"toy\"]", "[\"no-such-family\"]"), "unknown family 'no-such-family'"),
    (("[\"toy\"]", "[\"-+v\"]"), "family 'gauss-pixelcnn-vamp' models image data, but dataset 'toy' is toy data"),
    (("dataset = \"toy\"", "dataset = \"cifar\""), "dataset: unknown dataset 'cifar'"),
    (("dataset = \"toy\"", "dataset = \"amat:/no/such/dir\""), "directory /no/such/dir does not exist"),
    (("[0.5, 1, 2]", "[]"), "objective[0].values: List should have at least 1 item"),
    (("[0.5, 1, 2]", "[0.5, 0, 2]"), "beta values must be finite numbers > 0, got 0"),
    (("[0.5, 1, 2]", "[-1]"), "beta values must be finite numbers > 0, got -1"),
    (("kind = \"beta\"", "kind = \"free-bit\""), "objective[0].kind: unknown objective 'free-bit': use one of beta, "
     "target-rate, squared-target-rate, free-bits, warmup, two-stage or an import path"),
    (("kind = \"beta\"", "kind = \"warmup\""), "objective[0]: a warmup block needs warmup_epochs"),
    (("epochs = 2", "epochs = 0"), "epochs must be a positive integer"),
    (("lr = 0.01", "lr = 0.01\nmomentum = 0.9"), "unknown key budget.momentum"),
    (("seeds = [0, 1]", "seeds = [0, 1]\nseed = 3"), "unknown key seed"),
    (("seeds = [0, 1]", "seeds = []"), "seeds: Value should have at least 1 item"),
    (("seeds = [0, 1]", "seeds = [0, 1.5]"), "seeds[1]: Input should be a valid integer, got 1.5"),
    (("lr = 0.01", "lr = \"fast\""), "budget.lr: Input should be a valid number, got 'fast'"),
    (("[budget]", "[resources]\ncpus_per_trial = nan\n[budget]"), "resources.cpus_per_trial: Input should be a finite number"),
    (("[budget]", "[resources]\ngpus_per_trial = 1.5\n[budget]"), "resources.gpus_per_trial"),
    (("[budget]", "[resources]\ncompile = \"yes\"\n[budget]"), "resources.compile: Input should be a valid boolean"),
])
def test_bad_specs_fail_with_one_clear_message(tmp_path, change, message):
    path = write(tmp_path, TOY.replace(*change))
    with pytest.raises(SpecError) as e:
        load_spec(path)
    assert message in str(e.value)
    assert str(path) in str(e.value)  # names the file


def test_no_objective_block_or_bad_toml_or_missing_file(tmp_path):
    with pytest.raises(SpecError, match="no \\[\\[objective\\]\\] block"):
        load_spec(write(tmp_path, TOY.split("[[objective]]")[0]))
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(write(tmp_path, "dataset = "))
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "missing.toml")
    with pytest.raises(SpecError, match="--seeds must be comma-separated integers"):
        cli_overrides(seeds="0,x")


def test_an_objective_block_may_name_its_own_families():
    spec = load_spec("examples/mnist5k.toml")
    cells = spec.cells()
    # β grid, target rates, warm-up and free bits on two families, the squared target rate on one
    assert len(cells) == 12 * 4 + 6 * 2 + 2 * 2 + 2
    assert {(c.family, c.target_rate) for c in cells if c.objective == "squared-target-rate"} == {
        ("gauss-pixelcnn-normal", 5.0), ("gauss-pixelcnn-normal", 20.0)}
    assert {c.family for c in cells if c.objective == "target-rate"} == {
        f"{e}-pixelcnn-{m}" for e in ("gauss", "iaf") for m in ("normal", "maf", "vamp")}
    # --families narrows every block, and a block's own families must belong to the dataset's kind
    narrowed = load_spec("examples/mnist5k.toml", {"families": ["--+"]}).cells()
    assert {c.objective for c in narrowed} == {"beta"} and len(narrowed) == 4


def test_remedies_and_encoder_stds_are_axes_of_the_grid(tmp_path):
    spec = load_spec(write(tmp_path, """
dataset = "lingauss"
encoder_std = ["shared", "learned", 0.5]
[budget]
epochs = 20
[[objective]]
kind = "free-bits"
values = [0.5, 1]
beta = [1, 20]
[[objective]]
kind = "warmup"
values = [1]
warmup_epochs = [5, 10]
[[objective]]
kind = "squared-target-rate"
values = [2]
"""))
    cells = spec.cells()
    assert len(cells) == 3 * (2 * 2 + 2 + 1)
    settings = {(c.encoder_std, c.objective, c.beta, c.target_rate, c.free_bits, c.warmup_epochs) for c in cells}
    assert (None, "free-bits", 20.0, None, 1.0, None) in settings      # "shared" is linear's own: no field
    assert ("learned", "warmup", 1.0, None, None, 10) in settings
    assert (0.5, "squared-target-rate", None, 2.0, None, None) in settings
    # the same grid without the new axes names the cells it named before they existed
    plain = load_spec(write(tmp_path, TOY, "toy.toml")).cells()
    assert all(c.encoder_std is None and c.free_bits is None and c.warmup_epochs is None for c in plain)


@pytest.mark.parametrize("text, message", [
    ('encoder_std = "sharde"', "encoder_std must be learned or shared or a number > 0, got 'sharde'"),
    ('encoder_std = -1', "encoder_std must be a finite number > 0, got -1"),
])
def test_a_bad_encoder_std_is_one_clear_message(tmp_path, text, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_spec(write(tmp_path, text + "\n" + TOY))


def test_a_dry_run_plan_reads_whole_at_80_columns(rdsweep, tmp_path):
    """Each cell's model by its paper code, so no family name is cut to fit (the plan once showed
    'gauss-pixelc…' beside the code)."""
    done = rdsweep("launch", EXAMPLES / "demo.toml", "--storage", tmp_path, "--dry-run", env={"COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(map(len, lines)) <= 80 and not any("…" in line for line in lines), done.stdout
    models = [line.split("│")[2].strip() for line in lines if line.startswith("│")]
    assert models == ["-+-", "-+-", "---", "---", "---"]
    assert not any(tmp_path.iterdir())   # a dry run writes nothing
