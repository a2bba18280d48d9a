"""The full digits against mnist5k, setting by setting (docs/mnist5k-study.md, "On the full digits"; issue 32).

    python docs/studies/full_data.py docs/studies/mnist/frontier.parquet docs/studies/mnist5k/frontier.parquet
    python docs/studies/full_data.py FULL MNIST5K --update docs/mnist5k-study.md

For every converged setting of the full-data table, its row and the same setting's mnist5k row: −ELBO on train
and test, the gap between them (test − train: what the model learnt of its own training digits and not of
digits in general), the test R, D and probe accuracy, and the epochs to the stop. A setting with several seeds
is their mean, ± the seeds' standard error; one seed is ± its test examples' standard error. Then, per table,
the two decoders' test −ELBO difference at β = 1: does the ranking survive twelve times more data?
"""
import argparse
import math
from pathlib import Path

import pandas as pd
from cells_table import replace_block   # docs/studies/, beside this file

from rdsweep.uncertainty import seeds_error

SETTING = ["paper_code", "objective", "beta", "target_rate"]


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
    seeds = sorted(test.seed)
    se, _ = seeds_error(list(test.nelbo))
    if se is None:
        se = float(test.elbo_se.iloc[0]) if test.elbo_se.notna().all() else math.nan
    return {"seeds": len(seeds), "epochs": test.epochs.mean(), "train": train.nelbo.mean(), "test": test.nelbo.mean(),
            "se": se, "gap": (test.set_index("seed").nelbo - train.nelbo).mean(), "rate": test.rate.mean(),
            "distortion": test.distortion.mean(), "probe": test.probe_accuracy.mean()}


def plus_minus(se: float) -> str:
    return f" ± {se:.2f}" if math.isfinite(se) else ""   # cells trained before rdsweep 0.5 kept no error


def table(full: pd.DataFrame, small: pd.DataFrame) -> str:
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
        lines.append(f"Ĥ ({name}, the best test −ELBO of its converged cells): {best:.2f} nats.")
    for name, t in (("mnist", full), ("mnist5k", small)):
        deconv, pixelcnn = summary(t, "---", 1.0), summary(t, "-+-", 1.0)
        if deconv and pixelcnn:
            difference = deconv["test"] - pixelcnn["test"]
            error = math.hypot(deconv["se"], pixelcnn["se"])
            verdict = ("its error unknown" if not math.isfinite(error) else "resolved: beyond 2 standard errors"
                       if abs(difference) > 2 * error else "not resolved: within 2 standard errors")
            lines.append(f"{name}: test −ELBO of `---` − `-+-` at β = 1 = {difference:+.2f}{plus_minus(error)} "
                         f"nats ({verdict}).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("full")
    parser.add_argument("mnist5k")
    parser.add_argument("--update", type=Path, help="the page whose generated comparison to rewrite")
    args = parser.parse_args()
    text = table(converged(args.full), converged(args.mnist5k))
    if args.update is None:
        print(text)
        return
    args.update.write_text(replace_block(args.update.read_text(), "full-data", text))
    print(f"{args.update}: full-data comparison rewritten")


if __name__ == "__main__":
    main()
