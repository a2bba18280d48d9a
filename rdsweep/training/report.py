"""What `rdsweep train` prints of a trial's result: R, D, −ELBO per split, what the latent is worth, and what the
dataset knows exactly beside them."""
from __future__ import annotations

from rich import box
from rich.table import Table

from rdsweep.training.result import CellResult
from rdsweep.uncertainty import at_ceiling


def result_table(result: CellResult) -> Table:
    """Final R, D, −ELBO (± its standard error over the split's examples and z-draws) per split, what the latent
    is worth, with what the dataset knows exactly beside them; 80 columns wide at most (a pipe or a file gets
    80), so no header is cut."""
    truth, splits = result.truth, {split: m.model_dump() for split, m in result.splits.items()}
    has_iwae = any(m["iwae"] is not None for m in splits.values())
    # what the latent is worth, where measured (rdsweep/training/latent.py): the columns a split has any value for
    latent = [(key, label) for key, label in (("mutual_info", "I(x;z)"), ("active_units", "AU"),
                                              ("probe_accuracy", "probe"))
              if any(m.get(key) is not None for m in splits.values())]
    best = f", best valid at epoch {result.best_epoch}" if result.best_epoch else ""
    table = Table(title=f"{result.cell['family']} on {result.cell['dataset']}: {result.status} "
                        f"({result.stop_reason}) after {result.epochs} epoch(s){best}, {result.wall_s:.1f}s",
                  caption="nats per example; ±: the standard error of −ELBO; AU: active units", box=box.SIMPLE_HEAD)
    columns = (["split", "rate R", "distortion D", "−ELBO", "±"] + (["IWAE"] if has_iwae else [])
               + [label for _, label in latent])
    for col in columns:
        table.add_column(col, justify="right", no_wrap=True)

    def add_row(cells: dict) -> None:   # by column name; a column the row does not fill stays blank
        table.add_row(*[cells.get(col, "") for col in columns])

    fmt = lambda v, spec=".4f": "nan" if v is None else format(v, spec)
    for split, m in splits.items():
        add_row({"split": split, "rate R": fmt(m["rate"]), "distortion D": fmt(m["distortion"]),
                 "−ELBO": fmt(None if m["elbo"] is None else -m["elbo"]),
                 "±": "" if m.get("elbo_se") is None else fmt(m["elbo_se"], ".3f"), "IWAE": fmt(m["iwae"]),
                 **{label: "" if m.get(key) is None else str(m[key]) if key == "active_units" else
                    ("≥" if key == "mutual_info" and at_ceiling(m[key], m.get("latent_examples")) else "")
                    + fmt(m[key], ".3f") for key, label in latent}})
    if truth.entropy is not None:  # toy: every model has −ELBO ≥ H, and H − D ≤ I(X;Z) ≤ R
        add_row({"split": "exact", "−ELBO": f"H = {truth.entropy:.4f}",   # a plugin's data may declare H alone
                 "rate R": "" if truth.mutual_information is None else f"I(x;z*) = {truth.mutual_information:.4f}"})
    if truth.rate is not None:  # lingauss: the β-VAE optimum in closed form (train-split spectrum)
        add_row({"split": "closed form", "rate R": fmt(truth.rate), "distortion D": fmt(truth.distortion),
                 "−ELBO": fmt(-truth.elbo)})
    return table
