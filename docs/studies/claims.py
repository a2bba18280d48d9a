"""The key differences of the mnist5k study's claims, each with its errors (docs/mnist5k-study.md, "with errors").

    python docs/studies/claims.py docs/studies/mnist5k/frontier.parquet
    python docs/studies/claims.py docs/studies/mnist5k/frontier.parquet --update docs/mnist5k-study.md

Every row is `rdsweep compare TABLE A B` on the test split (rdsweep/analysis/compare.py): A − B averaged over the
seeds each side has, ± examples (paired over the cells that kept per-example values), ± seeds (the standard
error of the difference of seed means, where both sides have ≥ 2 seeds), their total in quadrature, and the
verdict: resolved when the difference exceeds t × the total (Student's t at the seeds' Welch–Satterthwaite
degrees of freedom; 2 without seeds, when the training's noise is not measured: docs/uncertainty.md).
"""
import argparse
import io
from contextlib import redirect_stdout
from pathlib import Path

import pandas as pd
from cells_table import replace_block   # docs/studies/, beside this file

from rdsweep.analysis.compare import compare
from rdsweep.errors import UserError

# claim, what the difference tests, A, B, the quantity it is about
CLAIMS = [
    ("(1) very different R, nearly one ELBO", "-+- σ=5", "-+- β=3", "rate"),
    ("(1)", "-+- σ=5", "-+- β=3", "elbo"),
    ("(1)", "++v σ=5", "++v β=3", "rate"),
    ("(1)", "++v σ=5", "++v β=3", "elbo"),
    ("(2) PixelCNN at β = 1 collapses, deconv does not", "--- β=1", "-+- β=1", "rate"),
    ("(2)", "--v β=1", "++v β=1", "rate"),
    ("(2) -+- β = 1 keeps R ≈ 1.7, β = 3 goes to 0", "-+- β=1", "-+- β=3", "rate"),
    ("(2) ++v β = 1 collapses all the way", "++v β=1", "++v β=3", "rate"),
    ("(3) β < 1 buys rate", "--- β=0.3", "--- β=1", "rate"),
    ("(3) and lowers D", "--- β=0.3", "--- β=1", "distortion"),
    ("(3)", "--v β=0.3", "--v β=1", "rate"),
    ("(3)", "--v β=0.3", "--v β=1", "distortion"),
    ("(3)", "-+- β=0.3", "-+- β=1", "rate"),
    ("(3)", "-+- β=0.3", "-+- β=1", "distortion"),
    ("(3)", "++v β=0.3", "++v β=1", "rate"),
    ("(3)", "++v β=0.3", "++v β=1", "distortion"),
    ("(4) σ = 5 has a better ELBO than β = 1", "-+- σ=5", "-+- β=1", "elbo"),
    ("(4)", "++v σ=5", "++v β=1", "elbo"),
    ("β = 1 has a better ELBO than β = 0.3 (PixelCNN)", "-+- β=1", "-+- β=0.3", "elbo"),
    ("", "++v β=1", "++v β=0.3", "elbo"),
    ("deconv: β = 1 has a better ELBO than β = 0.3", "--- β=1", "--- β=0.3", "elbo"),
    ("", "--v β=1", "--v β=0.3", "elbo"),
    ("the PixelCNN decoder is the better density model", "-+- σ=5", "--v β=1", "elbo"),
    ("", "++v σ=5", "--v β=1", "elbo"),
    ("++v σ = 5 is the study's best", "++v σ=5", "-+- σ=5", "elbo"),
]
NAMES = {"rate": "R", "distortion": "D", "elbo": "ELBO"}


def main(table: str) -> None:
    print("| claim | A − B | quantity | A | B | A − B | ± examples | ± seeds | ± total | seeds | verdict |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for claim, a, b, quantity in CLAIMS:
        try:
            c = compare(table, a, b)
        except UserError as e:
            print(f"| {claim} | `{a}` − `{b}` | {NAMES[quantity]} | | | | | | | | not in the table: {e} |")
            continue
        d = next(d for d in c.differences if d.quantity == quantity)
        fmt = lambda v: "—" if v is None else f"{v:.2f}"
        e = d.error
        verdict = ("no error known" if d.resolved is None else "resolved" if d.resolved else "not resolved")
        if d.resolved is not None:
            verdict += f" (t = {e.factor:.1f})" if e.seeds is not None else " (examples only)"
        seeds = f"{len(c.a.rows)} / {len(c.b.rows)}"
        print(f"| {claim} | `{a}` − `{b}` | {NAMES[quantity]} | {d.a:.2f} | {d.b:.2f} | {d.delta:+.2f} | "
              f"{fmt(e.examples)}{'' if d.paired or e.examples is None else ' u'} | {fmt(e.seeds)} | "
              f"{fmt(e.total)} | {seeds} | {verdict} |")


def seeds_status(table: str) -> str:
    """How far the seeds study has come: settings of the seeds spec with 1, 2 or 3 seeds in the table."""
    rows = pd.read_parquet(table)
    rows = rows[(rows["split"] == "test") & (rows["status"] == "converged")]
    settings = rows.groupby(["paper_code", "objective", "beta", "target_rate"], dropna=False)["seed"].nunique()
    wanted = [(code, obj, beta, sigma) for code, obj, beta, sigma in settings.index
              if code in ("---", "--v", "-+-", "++v") and (obj == "beta" and beta in (0.3, 1.0, 3.0)
                                                         or obj == "target-rate" and sigma == 5.0
                                                         and code in ("-+-", "++v"))]
    counts = settings.loc[wanted]
    done = [f"`{c}` {'β' if o == 'beta' else 'σ'}={b if o == 'beta' else s:g}" for (c, o, b, s), n in counts.items()
            if n == 3]
    return (f"**Status: {len(done)} of the 14 settings have three seeds** ({', '.join(done) or 'none'}); "
            f"{int((counts - 1).sum())} of the 28 new cells are in the table.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table")
    parser.add_argument("--update", type=Path, help="the page whose generated claims table to rewrite")
    args = parser.parse_args()
    if args.update is None:
        main(args.table)
    else:
        out = io.StringIO()
        with redirect_stdout(out):
            main(args.table)
        page = replace_block(args.update.read_text(), "claims-errors", out.getvalue().rstrip("\n"))
        args.update.write_text(replace_block(page, "seeds-status", seeds_status(args.table)))
        print(f"{args.update}: {len(CLAIMS)} claims rows; {seeds_status(args.table)}")
