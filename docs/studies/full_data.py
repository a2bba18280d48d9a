"""The full digits against mnist5k, setting by setting (docs/mnist5k-study.md, "On the full digits"; issue 32).

    python docs/studies/full_data.py docs/studies/mnist/frontier.parquet docs/studies/mnist5k/frontier.parquet
    python docs/studies/full_data.py FULL MNIST5K --update docs/mnist5k-study.md

For every converged setting of the full-data table, its row and the same setting's mnist5k row: −ELBO on train
and test, the gap between them (test − train: what the model learnt of its own training digits and not of
digits in general), the test R, D and probe accuracy, and the epochs to the stop. A setting with several seeds
is their mean, ± the seeds' standard error; one seed is ± its test examples' standard error (the two are not
the same kind of error: read the ± as the size of the noise, not as a test). Then, per table, the two
decoders' test ELBO difference at β = 1 as `rdsweep compare` judges it (paired over the test examples, with the
seeds' spread and Student's t where both sides have seeds): does the ranking survive twelve times more data?
"""
import argparse
import math
from pathlib import Path

import pandas as pd
from cells_table import replace_block   # docs/studies/, beside this file

from rdsweep.analysis.compare import compare, verdicts
from rdsweep.errors import UserError
from rdsweep.uncertainty import seeds_error


def converged(path: str) -> pd.DataFrame:
    t = pd.read_parquet(path)
    t = t[t.status == "converged"]
    return t.assign(nelbo=-t.elbo)


def summary(t: pd.DataFrame, code: str, beta: float) -> dict | None:
    """The setting's mean over its seeds on test and train, with the test −ELBO's error."""
    rows = t[(t.paper_code == code) & (t.objective == "beta") & (t.beta == beta)]
    if rows.empty:
        return None
    test, train = rows[rows.split == "test"], rows[rows.split == "train"].set_index("seed")
    se, _ = seeds_error(list(test.nelbo))
    if se is None:
        se = float(test.elbo_se.iloc[0]) if test.elbo_se.notna().all() else math.nan
    return {"seeds": len(test), "epochs": test.epochs.mean(), "train": train.nelbo.mean(), "test": test.nelbo.mean(),
            "se": se, "gap": (test.set_index("seed").nelbo - train.nelbo).mean(), "rate": test.rate.mean(),
            "distortion": test.distortion.mean(), "probe": test.probe_accuracy.mean()}


def plus_minus(se: float) -> str:
    return f" ± {se:.2f}" if math.isfinite(se) else ""   # cells trained before rdsweep 0.5 kept no error


def table(full_path: str, small_path: str) -> str:
    full, small = converged(full_path), converged(small_path)
    lines = ["| setting | data | seeds | epochs | train −ELBO | test −ELBO | gap | R | D | probe |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    settings = full[full.split == "test"][["paper_code", "beta"]].drop_duplicates().sort_values(["beta", "paper_code"])
    for code, beta in settings.itertuples(index=False):
        for name, t in (("mnist", full), ("mnist5k", small)):
            s = summary(t, code, beta)
            if s is None:
                continue
            lines.append(f"| `{code}` β={beta:g} | {name} | {s['seeds']} | {s['epochs']:.0f} | {s['train']:.2f} "
                         f"| {s['test']:.2f}{plus_minus(s['se'])} | {s['gap']:+.2f} | {s['rate']:.2f} "
                         f"| {s['distortion']:.2f} | {s['probe']:.3f} |")
    lines.append("")
    for name, t in (("mnist", full), ("mnist5k", small)):
        best = t[t.split == "test"].nelbo.min()
        lines.append(f"Ĥ ({name}, the best test −ELBO of its converged cells, every objective): {best:.2f} nats.")
    for name, path in (("mnist", full_path), ("mnist5k", small_path)):
        try:
            comparison = compare(path, "--- β=1", "-+- β=1")
        except UserError:   # a side not converged yet
            continue
        elbo = next(d for d in comparison.differences if d.quantity == "elbo")
        verdict = next(line for line, d in zip(verdicts(comparison), comparison.differences) if d is elbo)
        lines.append(f"{name}: `rdsweep compare` of `---` and `-+-` at β = 1, test split ({elbo.a:.2f} against "
                     f"{elbo.b:.2f}): {verdict}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("full")
    parser.add_argument("mnist5k")
    parser.add_argument("--update", type=Path, help="the page whose generated comparison to rewrite")
    args = parser.parse_args()
    text = table(args.full, args.mnist5k)
    if args.update is None:
        print(text)
        return
    args.update.write_text(replace_block(args.update.read_text(), "full-data", text))
    print(f"{args.update}: full-data comparison rewritten")


if __name__ == "__main__":
    main()
