"""The key differences of the mnist5k study's claims, each with its errors (docs/mnist5k-study.md, "with errors").

    python docs/studies/claims.py docs/studies/mnist5k/frontier.parquet

Every row is `rdsweep compare TABLE A B` on the test split (rdsweep/compare.py): A − B averaged over the
seeds each side has, ± examples (paired over the cells that kept per-example values) and ± seeds (the
standard error of the difference of seed means, where both sides have ≥ 2 seeds), and the verdict: resolved
when the difference exceeds 2 standard errors of the larger source.
"""
import sys

from rdsweep.compare import compare
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
    print("| claim | A − B | quantity | A | B | A − B | ± examples | ± seeds | seeds | verdict |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for claim, a, b, quantity in CLAIMS:
        try:
            c = compare(table, a, b)
        except UserError as e:
            print(f"| {claim} | `{a}` − `{b}` | {NAMES[quantity]} | | | | | | | not in the table: {e} |")
            continue
        d = next(d for d in c.differences if d.quantity == quantity)
        fmt = lambda v: "—" if v is None else f"{v:.2f}"
        verdict = ("no error known" if d.resolved is None else "resolved" if d.resolved else
                   "not resolved at this noise")
        seeds = f"{len(c.a.rows)} / {len(c.b.rows)}"
        print(f"| {claim} | `{a}` − `{b}` | {NAMES[quantity]} | {d.a:.2f} | {d.b:.2f} | {d.delta:+.2f} | "
              f"{fmt(d.examples_se)} | {fmt(d.seeds_se)} | {seeds} | {verdict} |")


if __name__ == "__main__":
    main(sys.argv[1])
