"""The rdsweep command line: thin commands that parse, call the modules, and print.

Every mistake a user can make (bad option, unknown name, malformed data or spec) ends as one line on
stderr and exit status 2; `main` is where that happens.
"""
from __future__ import annotations

import errno
import inspect
import os
import signal
import sys

import typer
from rich.console import Console
from rich.table import Table

from enum import Enum
from pathlib import Path
from typing import Optional

from rdsweep.errors import UserError, one_line
from rdsweep.sweep import stops


class _NoHelpMetavar:
    """Typer shows its own --help flag as "--help <bool>"; a flag takes no value, so it shows none."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class _Command(_NoHelpMetavar, typer.core.TyperCommand):
    """Docstrings are wrapped for the source; rich keeps those breaks inside its own wrapping to the terminal
    ("failed with their error,⏎never started"), so each paragraph is joined into one line first."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.help:
            self.help = "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(self.help).split("\n\n"))


class _Group(_NoHelpMetavar, typer.core.TyperGroup):
    pass


app = typer.Typer(
    cls=_Group,
    help="Rate-distortion sweeps of VAE families (Alemi et al., 'Fixing a Broken ELBO').",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()


@app.command(cls=_Command)
def families() -> None:
    """List the model families, built-in and from installed plugins: name, paper code, data, where each comes
    from, components (docs/extending.md: adding your own)."""
    from rdsweep.catalog import families_table
    from rdsweep.models.families import FAMILIES

    console.print(families_table())
    for problem in FAMILIES.broken:   # an installed plugin that does not load: listed, not fatal
        _warn(problem)


@app.command(cls=_Command)
def datasets() -> None:
    """List the datasets, built-in and from installed plugins: name, kind, example shape, labels, where each
    comes from."""
    from rdsweep.catalog import datasets_table
    from rdsweep.data.datasets import DATASETS

    console.print(datasets_table())
    for problem in DATASETS.broken:   # an installed plugin that does not load: listed, not fatal
        _warn(problem)


@app.command(cls=_Command)
def objectives() -> None:
    """List the training objectives, built-in and from installed plugins: name, parameter, what each minimises."""
    from rdsweep.catalog import objectives_table
    from rdsweep.training.objectives import OBJECTIVES

    console.print(objectives_table())
    for problem in OBJECTIVES.broken:   # an installed plugin that does not load: listed, not fatal
        _warn(problem)


class Size(str, Enum):
    small = "small"
    paper = "paper"


class Schedule(str, Enum):
    constant = "constant"
    paper = "paper"
    plateau = "plateau"


class Show(str, Enum):
    both = "both"
    objective = "objective"
    elbo = "elbo"


def _figure_path(path: Path, option: str) -> Path:
    """The file a figure option really writes: matplotlib picks the format by the suffix and adds .png to a
    name without one, so that is the path named in "wrote …". A directory, a missing folder or a suffix
    matplotlib cannot write is a UserError before anything is computed."""
    import os

    from matplotlib.backend_bases import FigureCanvasBase

    if path.is_dir():
        raise UserError(f"{option} {path} is a directory: give a file name, e.g. {path / 'plot.png'}")
    suffix = os.path.splitext(path.name)[1][1:].lower()
    if not suffix:
        path = path.with_name(path.name.rstrip(".") + ".png")
    elif suffix not in FigureCanvasBase.get_supported_filetypes():
        raise UserError(f"{option} {path}: cannot write a .{suffix} figure; give a name ending in .png "
                        "(or .pdf, .svg)")
    if not path.parent.is_dir():
        raise UserError(f"cannot write {path}: directory {path.parent} does not exist")
    return path


@app.command(cls=_Command)
def train(
    dataset: str = typer.Option("mnist5k", help="mnist5k, mnist (the full digits: docs/datasets.md), toy, lingauss, "
                                "curve, amat:DIR, idx:DIR, a plugin's (rdsweep datasets) or package.module:DATASET."),
    family: Optional[str] = typer.Option(
        None, help="Readable name, paper code (write codes as --family=-+v), a plugin's (rdsweep families) or "
        "package.module:FAMILY. Default: gauss-deconv-normal (---) for images, the dataset's own model for toy, "
        "lingauss, curve."),
    objective: Optional[str] = typer.Option(
        None, help="beta: D + βR.  target-rate: D + |σ − R|.  squared-target-rate: D + (σ − R)².  "
        "free-bits: D + β Σ max(λ, R per latent).  warmup: β ramped up over --warmup-epochs.  "
        "two-stage: decoder and marginal by log p(x), then the encoder by D + βR (low-dimensional latents). "
        "Or a plugin's (rdsweep objectives), or package.module:OBJECTIVE. "
        "Default: beta, or the objective whose parameter is given (--target-rate, --free-bits, --warmup-epochs)."),
    beta: float = typer.Option(1.0, help="β of the beta, free-bits, warmup and two-stage objectives (> 0; 1 is the ELBO)."),
    target_rate: Optional[float] = typer.Option(None, help="σ in nats for the target-rate objectives."),
    free_bits: Optional[float] = typer.Option(None, help="λ of free-bits: nats per latent that cost nothing."),
    warmup_epochs: Optional[int] = typer.Option(None, help="W of warmup: epochs over which β ramps up."),
    encoder_std: Optional[str] = typer.Option(
        None, help="The posterior's std: learned (a function of x), shared (one learnt value per latent) or a "
        "fixed number. Default: the family's own."),
    seed: int = typer.Option(0, help="Seed of the initialisation, batch order and z-samples."),
    epochs: int = typer.Option(1, help="Most training epochs; the stopping rule may end the run sooner."),
    size: Size = typer.Option(Size.small, help="small (CPU-friendly widths) or paper (Appendix F)."),
    batch_size: int = typer.Option(100, help="Examples per Adam step."),
    lr: float = typer.Option(3e-4, help="Adam learning rate."),
    schedule: Schedule = typer.Option(
        Schedule.plateau, help="plateau: divide by --lr-divisor on each plateau of the valid objective; "
        "constant; or paper: constant then linear decay to 0."),
    eval_every: int = typer.Option(1, help="Epochs between evaluations of the valid objective."),
    patience: int = typer.Option(5, help="Evaluations without an improvement > --min-delta that make a plateau."),
    min_delta: Optional[float] = typer.Option(
        None, help="Smallest improvement of the valid objective that counts, in nats (default: relative, 1e-4)."),
    min_delta_relative: Optional[float] = typer.Option(
        None, help="Smallest improvement as a fraction of the objective's size (at least 1 nat); with both, the "
        "larger counts. 1e-4 when neither is given (docs/convergence.md)."),
    lr_reductions: int = typer.Option(2, help="plateau schedule: rate reductions before a plateau stops the run."),
    lr_divisor: float = typer.Option(10.0, help="plateau schedule: what each reduction divides the rate by."),
    eval_samples: int = typer.Option(1, help="z-samples per example in the final R, D, ELBO."),
    iwae_k: int = typer.Option(0, help="Importance samples for an IWAE bound per split (0: skip)."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1 … (default: cuda if available)."),
    compile: bool = typer.Option(False, "--compile", metavar="", help="torch.compile the model first: pays only for long "
                                 "runs (a compile takes ~40 s on a CPU; docs/benchmarks.md)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the result as JSON here."),
    images: Optional[Path] = typer.Option(None, help="Write data/reconstruction/sample grids to this PNG."),
    keep_model: Optional[Path] = typer.Option(
        None, help="Save the evaluated (best-valid) weights to this new file; docs/train.md: how to load them."),
) -> None:
    """Train one model and print its final rate R, distortion D and ELBO = −(R + D) per split (nats)."""
    from rdsweep.cells import Cell, tolerance
    from rdsweep.data.loaders import load_dataset
    from rdsweep.models.families import DEFAULT_FAMILY
    from rdsweep.sweep.ledger import write_json_atomic
    from rdsweep.training.report import result_table
    from rdsweep.training.result import InvalidResult
    from rdsweep.training.objectives import get_objective
    from rdsweep.training.stopping import blowups, epoch_ranges, evaluated_epochs, recovered
    from rdsweep.training.trainer import train as train_cell

    given = {"target_rate": target_rate, "free_bits": free_bits, "warmup_epochs": warmup_epochs}
    options = {"target_rate": "--target-rate SIGMA", "free_bits": "--free-bits LAMBDA", "warmup_epochs": "--warmup-epochs W"}
    if objective is None:   # the objective whose parameter is given
        objective = {"target_rate": "target-rate", "free_bits": "free-bits", "warmup_epochs": "warmup"}.get(
            next((k for k, v in given.items() if v is not None), None), "beta")
    entry = get_objective(objective)
    for needed in (entry.knob, entry.extra):
        if needed in given and given[needed] is None:
            raise UserError(f"--objective {objective} needs {options[needed]}")
    kind = load_dataset(dataset).kind  # checks the dataset before any training starts
    if family is None and kind not in DEFAULT_FAMILY:
        raise UserError(f"dataset {dataset!r} is {kind} data, which no built-in family models: give --family")
    cell = Cell(
        dataset=dataset, family=family or DEFAULT_FAMILY[kind], objective=objective,
        beta=beta if entry.knob == "beta" else None,
        target_rate=target_rate if entry.knob == "target_rate" else None,
        free_bits=free_bits if entry.extra == "free_bits" else None,
        warmup_epochs=warmup_epochs if entry.extra == "warmup_epochs" else None,
        encoder_std=_encoder_std(encoder_std), seed=seed, size=size.value, epochs=epochs, batch_size=batch_size, lr=lr, schedule=schedule.value,
        eval_every=eval_every, patience=patience, **tolerance(min_delta, min_delta_relative),
        lr_reductions=lr_reductions, lr_divisor=lr_divisor, eval_samples=eval_samples, iwae_k=iwae_k,
    ).validated()
    images = images and _figure_path(images, "--images")   # the file really written: .png added to a bare name
    for path in (json_path, images, keep_model):
        if path is not None and not path.parent.is_dir():
            raise UserError(f"cannot write {path}: directory {path.parent} does not exist")
        if path is not None and path.is_dir():   # found before training, not after it
            raise UserError(f"cannot write {path}: it is a directory; give a file name")
    if keep_model is not None and keep_model.exists():
        raise UserError(f"--keep-model {keep_model} exists: rdsweep does not overwrite a kept model")

    def show_epoch(m: dict, state: dict) -> None:
        valid = (f"  valid {m['valid_objective']:9.3f}" + (" *" if state["rule"]["best_epoch"] == m["epoch"] else "  ")
                 if "valid_objective" in m else "")
        console.print(f"epoch {m['epoch']:>3}/{cell.epochs}  lr {m['lr']:.1e}  loss {m['loss']:9.3f}  "
                      f"R {m['rate']:8.3f}  D {m['distortion']:9.3f}{valid}  ({m['wall_s']:.1f}s)", highlight=False)

    console.print(f"training {cell.family} on {cell.dataset}: {cell.objective} "
                  f"{cell.beta if cell.beta is not None else cell.target_rate}, seed {cell.seed}, "
                  f"size {cell.size}, {cell.epochs} epoch(s)", highlight=False)
    try:
        result = train_cell(cell, on_epoch=show_epoch, device=device, images=images, keep_model=keep_model,
                            compile=compile)
    except InvalidResult as e:   # a failure, not the user's mistake: exit 1, and nothing written
        print(f"rdsweep: error: {one_line(e)}", file=sys.stderr)
        raise typer.Exit(1)
    console.print(result_table(result))
    if json_path is not None:
        write_json_atomic(json_path, result.model_dump())
        console.print(f"wrote {json_path}")
    for path in (images, keep_model):
        if path is not None and result.status != "diverged":
            console.print(f"wrote {path}")
    history = result.history
    if (blown := blowups(result.cell, history)) and result.status != "diverged":
        how = "and recovered" if recovered(history, blown) else "and had not recovered at the last evaluation"
        evaluated = evaluated_epochs(history)
        print(f"rdsweep: warning: the valid objective blew up at epoch {epoch_ranges(blown, evaluated)} {how}; "
              "look at the history before trusting the point, or lower --lr", file=sys.stderr)
    if result.status == "unconverged":
        print(f"rdsweep: warning: unconverged: the valid objective was still improving at epoch {cell.epochs}; "
              "raise --epochs", file=sys.stderr)
    if result.status == "diverged":
        print(f"rdsweep: error: diverged ({result.stop_reason}): lower --lr or raise --batch-size", file=sys.stderr)
        raise typer.Exit(1)


def _encoder_std(value: str | None) -> str | float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value   # None, a name, or a mistake that Cell.validated names


@app.command(cls=_Command)
def launch(
    spec: Path = typer.Argument(..., help="Sweep spec (TOML), e.g. examples/quick.toml."),
    storage: Optional[Path] = typer.Option(None, help="Folder of experiments (default: ./rdsweep-results)."),
    name: Optional[str] = typer.Option(None, help="Experiment name, one path segment (default: the spec's file stem)."),
    address: Optional[str] = typer.Option(None, help="Join this Ray cluster (HOST:PORT or 'auto') instead of starting one."),
    dry_run: bool = typer.Option(False, "--dry-run", metavar="", help="Print the cells and what would run; start nothing."),
    dataset: Optional[str] = typer.Option(None, help="Override the spec's dataset."),
    families: Optional[str] = typer.Option(None, help="Override: comma-separated names/codes, or 'all'."),
    seeds: Optional[str] = typer.Option(None, help="Override: comma-separated seeds, e.g. 0,1,2."),
    size: Optional[Size] = typer.Option(None, help="Override the spec's model size."),
    epochs: Optional[int] = typer.Option(None, help="Override budget.epochs (the cap; raising it continues unconverged cells)."),
    batch_size: Optional[int] = typer.Option(None, help="Override budget.batch_size."),
    lr: Optional[float] = typer.Option(None, help="Override budget.lr."),
    schedule: Optional[Schedule] = typer.Option(None, help="Override budget.schedule."),
    patience: Optional[int] = typer.Option(None, help="Override budget.patience."),
    min_delta: Optional[float] = typer.Option(None, help="Override budget.min_delta (nats)."),
    min_delta_relative: Optional[float] = typer.Option(None, help="Override budget.min_delta_relative (either one "
                                                       "replaces the spec's tolerance)."),
    eval_every: Optional[int] = typer.Option(None, help="Override budget.eval_every."),
    cpus_per_trial: Optional[float] = typer.Option(None, help="Override resources.cpus_per_trial."),
    gpus_per_trial: Optional[str] = typer.Option(None, help="Override: 'auto', 0, 1, or a fraction that packs trials per GPU."),
    max_failures: Optional[int] = typer.Option(None, help="Override resources.max_failures (retries per trial)."),
    max_concurrent: Optional[int] = typer.Option(None, help="Override resources.max_concurrent."),
    cells_per_wave: Optional[int] = typer.Option(None, help="Override resources.cells_per_wave: cells per Tune run (default 500; the driver's memory grows with a run's trials)."),
    strict: bool = typer.Option(False, "--strict", metavar="", help="Exit 1 unless every cell converged (unconverged and diverged cells too)."),
) -> None:
    """Train a spec's cells as Ray Tune trials; finished cells are skipped, interrupted ones resumed.

    Exit status: 0 every cell has a result (unconverged or diverged ones with a warning); 1 a cell failed (or, with --strict, did not converge); 130 interrupted by Ctrl-C, 143 by SIGTERM, 129 by SIGHUP (checkpoints kept: run it again to resume); 2 a mistake in the command or spec (nothing changed)."""
    from rdsweep.spec import cli_overrides, load_spec
    from rdsweep.sweep.ledger import Experiment, plan
    from rdsweep.sweep.plan_view import print_plan

    overrides = cli_overrides(
        dataset=dataset, families=families, seeds=seeds, size=size and size.value, epochs=epochs,
        batch_size=batch_size, lr=lr, schedule=schedule and schedule.value, patience=patience,
        min_delta=min_delta, min_delta_relative=min_delta_relative, eval_every=eval_every,
        cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, max_failures=max_failures,
        max_concurrent=max_concurrent, cells_per_wave=cells_per_wave)
    sweep_spec = load_spec(spec, overrides)
    experiment = Experiment.at(storage, spec.stem if name is None else name)   # --name '': refused, not the stem
    # a damaged ledger (cells/ a file, a link that loops, a folder this user cannot write): one line, before
    # Ray, rather than every trial failing on it
    experiment.check_layout(reads=("cells", "checkpoints"), writes=not dry_run)
    experiment.check_protocol(sweep_spec.protocol)
    if dry_run:
        print_plan(console, experiment, plan(experiment, sweep_spec.cells()), dry_run=True)
        return
    if address is not None or os.environ.get("RAY_ADDRESS"):
        from rdsweep.sweep.launch import check_address

        check_address(address)   # no cluster answers there: one line in seconds (ray.init would wait forever)
    from rdsweep.data.loaders import load_dataset

    dataset = load_dataset(sweep_spec.dataset)  # a missing or malformed data file stops here, before Ray starts
    if any(c.plugins for c in sweep_spec.cells()):   # and so does a plugin that breaks its contract
        from rdsweep.training.contract import check_plugins

        for line in check_plugins(sweep_spec.cells(), dataset):
            _warn(line)
    stops.stop_like_ctrl_c()          # from here on SIGTERM and SIGHUP stop the launch as Ctrl-C does
    try:
        with experiment.lock():           # from here on, no other launch trains this experiment's cells
            planned = plan(experiment, sweep_spec.cells())
            print_plan(console, experiment, planned, dry_run=False)
            earlier = [p.status for p in planned if p.action == "skip"]  # finished before this launch
            if len(earlier) == len(planned):
                console.print("nothing to train")
                for state in ("unconverged", "diverged"):
                    if earlier.count(state):
                        _warn(f"{earlier.count(state)} cell(s) of this spec are {state} "
                              "(`rdsweep status` lists them)")
                if strict and any(status != "converged" for status in earlier):
                    _warn(f"--strict: {sum(s != 'converged' for s in earlier)} cell(s) of this spec did not "
                          "converge")
                    raise typer.Exit(1)
                return
            with stops.deferred():
                from rdsweep.sweep.launch import launch as run_launch   # imports Ray (seconds)

            summary = run_launch(sweep_spec, experiment, planned, address=address, console=console)
    except KeyboardInterrupt:   # while it plans or Ray starts, or a second Ctrl-C / SIGTERM while Tune stops
        interrupted("checkpoints kept; run the same command to resume")
    console.print(f"done: {summary.converged} converged, {summary.unconverged} unconverged, {summary.diverged} "
                  f"diverged, {summary.failed} failed, {summary.unfinished} unfinished, {summary.skipped} skipped "
                  "(already finished)", highlight=False)
    if summary.efficiency is not None:
        console.print(f"sweep: {summary.cell_s:.1f} s of the cells' own time on {summary.slots} slot(s) "
                      f"(ideal {summary.cell_s / summary.slots:.1f} s) in {summary.wall_s:.1f} s: efficiency "
                      f"{summary.efficiency:.2f}", highlight=False)
    for warning in summary.warnings:
        _warn(warning)
    if summary.unconverged:
        _warn(f"{summary.unconverged} cell(s) reached the epoch cap still improving; raise --epochs and launch "
              "again to continue them")
    if summary.diverged:
        _warn(f"{summary.diverged} cell(s) diverged (a non-finite loss, or a blow-up); their rows have no R or D "
              "(`rdsweep curves` shows where)")
    if summary.unfinished:  # Tune returns before every trial ended only when it was interrupted
        interrupted(f"{summary.unfinished} cell(s) unfinished, their checkpoints kept; run the same command again "
                    "to resume them")
    if summary.no_space:
        _no_space(summary.no_space)
    if summary.failed:
        print(f"rdsweep: error: {summary.failed} cell(s) failed (`rdsweep status` or the table's error column "
              "says why); run the same command again to retry them", file=sys.stderr)
        raise typer.Exit(1)
    not_converged = summary.unconverged + summary.diverged + sum(s != "converged" for s in earlier)
    if strict and not_converged:
        _warn(f"--strict: {not_converged} cell(s) of this spec did not converge")
        raise typer.Exit(1)


def interrupted(what: str) -> None:
    """One line on stderr, and exit 128 + the signal's number: 130 Ctrl-C (SIGINT), 143 SIGTERM, 129 SIGHUP."""
    signum = stops.stopped_by()
    stops.ignore_further()
    by = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
    print(f"rdsweep: interrupted{by}: {what}", file=sys.stderr)
    raise typer.Exit(128 + signum)


def _warn(message: str) -> None:
    print(f"rdsweep: warning: {message}", file=sys.stderr)


@app.command(cls=_Command)
def status(
    experiments: list[Path] = typer.Argument(..., help="Experiment directories, e.g. rdsweep-results/quick."),
    json_out: bool = typer.Option(False, "--json", metavar="", help="Print JSON (a list, one object per experiment) for scripts."),
) -> None:
    """How a sweep is doing, read from its ledger: no Ray needed, any shell that sees the storage.

    Cells finished by status, running (since when, at which epoch), resumable, failed with their error,
    never started; each family's measured times; an ETA (docs/launch.md, "Watching a sweep")."""
    import json

    from rdsweep.sweep.ledger import Experiment
    from rdsweep.sweep.status import experiment_status, render

    found = [experiment_status(Experiment(path)) for path in experiments]
    if json_out:
        print(json.dumps([s.to_json() for s in found], indent=1))
        return
    for i, one in enumerate(found):
        if i:
            console.print()
        console.print(render(one, wide=console.width >= 120))


@app.command(cls=_Command)
def collect(
    experiments: list[Path] = typer.Argument(..., help="Experiment directories, e.g. rdsweep-results/quick."),
    out: Optional[Path] = typer.Option(None, help="Table path (default: EXPERIMENT/frontier.parquet; required for several)."),
) -> None:
    """Gather finished trial results from disk into the frontier table (Parquet), atomically."""
    from rdsweep.analysis.collect import collect as collect_table

    path, table = collect_table(experiments, out)
    statuses = table.column("status").to_pylist()[::3]  # one row per cell × 3 splits
    summary = ", ".join(f"{statuses.count(s)} {s}" for s in ("converged", "unconverged", "diverged", "failed")
                        if s in statuses)
    console.print(f"wrote {path}: {table.num_rows} rows ({len(statuses)} cells: {summary})", highlight=False)


@app.command(cls=_Command)
def frontier(
    table: Path = typer.Argument(..., help="A frontier table written by `rdsweep collect`."),
    plot_path: Optional[Path] = typer.Argument(None, metavar="[PATH]", help="Where --plot writes the PNG (default: TABLE's folder, frontier-SPLIT.png)."),
    plot: bool = typer.Option(False, "--plot", metavar="", help="Write a PNG of the RD plane (to PATH if given)."),
    split: str = typer.Option("test", help="Which split's R and D: train, valid or test."),
    include_unconverged: bool = typer.Option(
        False, "--include-unconverged", metavar="", help="Also use cells that hit the epoch cap still improving (drawn hollow)."),
    grids: Optional[Path] = typer.Option(
        None, help="Write one PNG with a data / reconstruction / sample row per regime found (needs image grids)."),
    rate_axis: str = typer.Option(
        "auto", "--rate-axis", help="The plot's rate axis: linear, symlog (linear below 1 nat, logarithmic above), "
        "or auto (symlog where the rates span more than 10 nats)."),
) -> None:
    """Per-family and overall RD frontiers, Ĥ and each point's regime; --plot draws the RD plane.

    Only converged cells count unless --include-unconverged is given."""
    from rdsweep.analysis.frontier import RATE_AXES, analyse, plot as plot_frontier, read_table, render

    if rate_axis not in RATE_AXES:
        raise UserError(f"--rate-axis {rate_axis}: use one of {', '.join(RATE_AXES)}")
    plot_path = plot_path and _figure_path(plot_path, "PATH")   # checked before the table is read
    grids = grids and _figure_path(grids, "--grids")
    result = analyse(read_table(table, split, include_unconverged), split)
    console.print(render(result, split), highlight=False)
    if plot or plot_path is not None:
        out = plot_frontier(result, plot_path or table.parent / f"frontier-{split}.png", rate_axis=rate_axis)
        console.print(f"wrote {out}", highlight=False)
    if grids is not None:
        from rdsweep.analysis.frontier import regime_examples
        from rdsweep.analysis.grids import compose_regime_grids

        examples = regime_examples(result, table.parent)
        out = compose_regime_grids(examples, grids, title=f"{result.dataset}: one model per regime "
                                   f"({split} digits, their reconstructions, samples from m(z))")
        console.print(f"wrote {out}: " + ", ".join(e["regime"] for e in examples))


@app.command(cls=_Command)
def select(
    table: Path = typer.Argument(..., help="A frontier table written by `rdsweep collect`."),
    by: Optional[list[str]] = typer.Option(
        None, "--by", metavar="CRITERION", help="valid-elbo (highest ELBO), iwae (highest IWAE bound) or "
        "probe-accuracy (highest linear-probe accuracy on draws of z); repeat for several. "
        "Default: every one the table can answer."),
    rate: Optional[list[float]] = typer.Option(
        None, "--rate", metavar="SIGMA", help="Also pick the best-ELBO cell whose rate on the judging split is at "
        "least SIGMA nats: the cheapest latent of that rate. Repeatable."),
    probe: Optional[list[float]] = typer.Option(
        None, "--probe", metavar="P", help="Also pick the best-ELBO cell whose probe accuracy on the judging split "
        "is at least P (e.g. 0.8): the cheapest latent that names the label that often. Repeatable."),
    split: str = typer.Option("valid", help="The split the criteria judge on: train, valid or test."),
    report_split: str = typer.Option("test", help="The split whose R, D, ELBO and latent numbers are shown."),
    include_unconverged: bool = typer.Option(
        False, "--include-unconverged", metavar="", help="Also choose among cells that hit the epoch cap still improving."),
    by_setting: bool = typer.Option(
        False, "--by-setting", metavar="", help="Judge each setting (family and β or σ) by its seeds' mean, "
        "with the seeds' spread in its error, instead of each cell (a model you keep) on its own."),
    json_out: bool = typer.Option(False, "--json", metavar="", help="Print JSON (a list of picks, every field) for scripts."),
) -> None:
    """Which cell each model-selection criterion picks, and the ELBO a useful latent costs.

    Does the best-ELBO β give a model whose latent is unused? (docs/selection.md). Picks are made overall
    and per family; ties go to the first cell in collect's row order (experiment, family, objective, β, σ,
    λ, W, seed, cell id). Every ELBO comes with its standard error, and candidates within 2 standard errors of
    a pick are listed as tied with it (docs/uncertainty.md). Writes nothing."""
    import json

    from rich.measure import Measurement

    from rdsweep.analysis.select import render, select as select_cells

    selection = select_cells(table, by, rate, split, report_split, include_unconverged, probe, by_setting)
    if json_out:
        print(json.dumps(selection.picks, indent=1))
        return
    # Drawn as wide as its tables need (80 columns, more with seeds or IWAE), never squeezed: on a narrower
    # terminal the lines wrap rather than lose columns or cut numbers.
    output = render(selection, max(console.width, 80))
    width = Measurement.get(console, console.options.update_width(1000), output).minimum
    Console(width=max(console.width, 80, width)).print(output)


@app.command(cls=_Command)
def compare(
    table: Path = typer.Argument(..., help="A frontier table written by `rdsweep collect`."),
    a: str = typer.Argument(..., metavar="A", help="A cell id (or a unique prefix), or a family and a setting in one "
                            "argument, optionally a seed, an experiment and a posterior std: '-+- β=1', "
                            "'gauss-pixelcnn-normal sigma=5 seed=1', '--- β=1 W=10 exp=mnist5k std=learned'."),
    b: str = typer.Argument(..., metavar="B", help="The other side, as A."),
    split: str = typer.Option("test", help="The split to compare on: train, valid or test."),
    include_unconverged: bool = typer.Option(
        False, "--include-unconverged", metavar="", help="Also compare cells that hit the epoch cap still improving."),
) -> None:
    """ΔR, ΔD, ΔELBO of A − B with their errors, and whether each difference is resolved.

    Paired over the examples both were evaluated on (cells from rdsweep 0.5 on), and over seeds where both
    sides have two or more; resolved means beyond 2 standard errors of the larger source
    (docs/uncertainty.md). A side without a seed is every seed of its setting. A side that starts with a paper
    code needs `--` before the sides: rdsweep compare TABLE -- '-+- σ=5' '-+- β=1'. Writes nothing."""
    from rdsweep.analysis.compare import compare as compare_cells, render

    Console(width=max(console.width, 80)).print(render(compare_cells(table, a, b, split, include_unconverged)))


@app.command(cls=_Command)
def curves(
    experiments: list[Path] = typer.Argument(..., help="Experiment directories, e.g. rdsweep-results/quick."),
    plot: Optional[Path] = typer.Option(None, help="Write the curves, one panel per family, to this PNG "
                                        "(.png is added to a name without a suffix)."),
    show: Optional[Show] = typer.Option(
        None, help="What --plot draws per family: objective (each cell's own valid objective, what its stopping "
        "rule judges: D + βR, D + |σ − R|, …, not comparable across cells), elbo (the valid −ELBO = R + D, "
        "comparable), or both (default: the objective above the −ELBO)."),
) -> None:
    """The valid objective of every cell against epoch: status, best epoch and how it ended.

    Reads the ledger only (no Ray), so it also works on the finished cells of a running sweep. --plot draws the
    curves, by default each cell's own objective above its −ELBO (--show)."""
    import pandas as pd

    from rdsweep.analysis.curves import curves as read_curves, plot_curves, summary
    from rdsweep.training.stopping import epoch_ranges

    if show is not None and plot is None:
        raise UserError(f"--show {show.value} chooses what --plot draws: give --plot PNG too")
    plot = plot and _figure_path(plot, "--plot")   # checked before anything is read
    frame = read_curves(experiments)
    several = frame["experiment"].nunique() > 1   # one experiment: its name is in the title, not every row
    table = Table(title=f"learning curves (valid objective, nats){'' if several else ': ' + frame['experiment'].iloc[0]}",
                  title_justify="left", box=None, padding=(0, 1, 0, 0))   # fits 80 columns
    for col in ("experiment",) * several + ("family", "objective", "seed", "status", "epochs", "best\nepoch", "best", "last"):
        numeric = col in ("seed", "epochs", "best\nepoch", "best", "last")
        # a family's name is what a reader looks for in the row: never cut to "gauss…" on an 80-column terminal
        table.add_column(col, justify="right" if numeric else "left", no_wrap=True)
    fmt = lambda v: "" if pd.isna(v) else f"{v:.2f}"   # pd.isna: a failed cell's best epoch is pandas' NA
    cells = summary(frame)
    for r in cells.itertuples():
        table.add_row(*(r.experiment,) * several, r.family, r.knob, str(r.seed), r.status,
                      f"{r.epochs_run}/{r.epoch_cap}", "" if pd.isna(r.best_epoch) else str(int(r.best_epoch)),
                      fmt(r.best_valid_objective), fmt(r.last_valid_objective))
    console.print(table)
    blown = [r for r in cells.itertuples() if r.blowups]
    if blown:   # far above the plot's range: name them, or a reader would take the curve for a smooth one
        console.print("the valid objective blew up (far above its best; docs/convergence.md):", highlight=False)
        for r in blown:
            console.print(f"  {r.experiment + ' ' if several else ''}{r.family} {r.knob} seed {r.seed}: epoch "
                          f"{epoch_ranges(r.blowups, r.evaluated)}, {'recovered, ' if r.recovered else ''}{r.status}",
                          highlight=False)
    if plot is not None:
        console.print(f"wrote {plot_curves(frame, plot, (show or Show.both).value)}", highlight=False)


@app.command(cls=_Command)
def bench(
    size: list[Size] = typer.Option([Size.small, Size.paper], help="Model sizes for the per-family throughput."),
    steps: int = typer.Option(4, help="Timed Adam steps (batch 100) per family and size."),
    ray_trials: int = typer.Option(0, help="Instead: Ray launch overhead over this many 1-epoch toy trials."),
    collect_cells: int = typer.Option(0, help="Instead: time collect over this many synthetic cell results."),
    sweep: Optional[Path] = typer.Option(None, help="Instead: this spec's cells by an in-process loop, then launched: the sweep's efficiency."),
    keep: Optional[Path] = typer.Option(None, help="With --sweep: launch into this new experiment directory "
                                        "and keep it (collect, frontier and curves can read it)."),
    compile: Optional[list[str]] = typer.Option(
        None, "--compile", metavar="FAMILY",
        help="Instead: eager against torch.compile'd steps of these families (repeat; 'all' for every one), "
             "at the first --size: images/s, the compile's seconds, and the images that repay it."),
) -> None:
    """Benchmarks: training images/s per family and size, the trainer's overhead, the sweep's costs.

    By default images/s per family and size and the trainer's overhead over a bare loop; with --ray-trials,
    --collect-cells or --sweep, the sweep machinery's costs (docs/benchmarks.md)."""
    from rdsweep import bench as benchmarks

    if sweep is not None:
        from rdsweep.spec import load_spec

        say = lambda line: console.print(line, highlight=False)  # noqa: E731
        r = benchmarks.sweep_efficiency(load_spec(sweep), keep, say)  # a bad spec: one line before anything trains
        console.print(f"sweep {r['spec']}: {r['cells']} cells, {r['slots']} slot(s): in-process loop {r['loop_s']:.1f} s "
                      f"(ideal {r['ideal_s']:.1f} s), launch {r['launch_s']:.1f} s: efficiency {r['efficiency']:.2f}; "
                      f"same numbers in every cell: {'yes' if r['same_numbers'] else 'NO'}", highlight=False)
        return
    if compile:
        from rdsweep.models.families import get_family

        families = None if "all" in compile else [get_family(f) for f in compile]  # unknown: one line, exit 2
        if families and (other := [f.name for f in families if f.data_kind != "image"]):
            raise UserError(f"--compile times the image families (mnist5k digits); {', '.join(other)} is not one")
        families = families and [f.name for f in families]
        for r in benchmarks.compile_payoff(size[0].value, families):
            even = r["break_even_images"]
            console.print(f"{r['family']} ({r['code']}) {r['size']}, batch 50: eager {r['eager_images_per_s']:.0f} "
                          f"images/s, compiled {r['compiled_images_per_s']:.0f} images/s "
                          f"({r['compiled_images_per_s'] / r['eager_images_per_s']:.2f}x) after a "
                          f"{r['compile_s']:.0f} s compile: "
                          + (f"repaid after {even:,.0f} images ({even / 4000:.1f} mnist5k epochs)" if even
                             else "never repaid"), highlight=False)
        return
    if ray_trials <= 0 and collect_cells <= 0:
        table = Table(title=f"training images/s (batch 100, forward + backward + Adam), {steps} steps")
        for col in ("family", "code", "size", "images/s", "parameters"):
            table.add_column(col, justify="right" if col in ("images/s", "parameters") else "left")
        for r in benchmarks.family_throughput([s.value for s in size], steps=steps):
            table.add_row(r["family"], r["code"], r["size"], f"{r['images_per_s']:.0f}", f"{r['parameters']:,}")
            console.print(f"{r['family']} ({r['code']}) {r['size']}: {r['images_per_s']:.0f} images/s",
                          highlight=False)
        console.print(table)
        t = benchmarks.trainer_overhead()
        console.print(f"one epoch of {t['family']} ({t['size']}, {t['images']} images): bare loop "
                      f"{t['bare_epoch_s']:.2f} s, trainer {t['trainer_epoch_s']:.2f} s "
                      f"(whole trial incl. data and evaluation of 3 splits: {t['trainer_total_s']:.2f} s)",
                      highlight=False)
    if ray_trials > 0:
        r = benchmarks.ray_overhead(ray_trials)
        console.print(f"ray overhead: {r['trials']} toy trials of {r['epochs']} epoch, one at a time: bare trainer "
                      f"{r['bare_per_trial_s']:.2f} s/trial, Ray Tune {r['ray_per_trial_s']:.2f} s/trial "
                      f"(incl. starting Ray) -> overhead {r['overhead_per_trial_s']:.2f} s/trial", highlight=False)
    if collect_cells > 0:
        c = benchmarks.collect_scale(collect_cells)
        console.print(f"collect: {c['cells']} cell results -> {c['rows']} rows, {c['table_bytes'] / 1e6:.1f} MB: "
                      f"{c['collect_first_s']:.1f} s first, {c['collect_second_s']:.1f} s again "
                      f"(generating them took {c['generate_s']:.1f} s)", highlight=False)


def main() -> None:
    """Console entry point: run the app, turning user mistakes into one line and exit status 2."""
    try:
        status = app(standalone_mode=False)  # click returns a typer.Exit's status instead of raising it
        sys.exit(status if isinstance(status, int) else 0)
    except UserError as e:
        _fail(str(e))
    except typer.Abort:
        try:
            interrupted("checkpoints kept; run the same command to resume")
        except typer.Exit as e:
            sys.exit(e.exit_code)
    except OSError as e:  # storage that cannot be used mid-run (full, gone, read-only): one line, not a traceback
        if e.errno == errno.ENOSPC and e.filename:
            from rdsweep.files import mount_point

            _no_space(mount_point(Path(e.filename)), f" (writing {e.filename})")
            sys.exit(1)
        print(f"rdsweep: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        sys.exit(1)
    except typer.TyperException as e:  # a bad option or argument, parsed by Typer's click
        if type(e).__name__ == "NoArgsIsHelpError":
            e.show()
            sys.exit(0)
        _fail(e.format_message())


def _no_space(mount: str, writing: str = "") -> None:
    print(f"rdsweep: error: no space left on device under {mount} (the experiment's filesystem){writing}: free "
          "space and run the same command again (checkpoints kept)", file=sys.stderr)


def _fail(message: str) -> None:
    print(f"rdsweep: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(2)
