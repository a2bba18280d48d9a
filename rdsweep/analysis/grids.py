"""One figure of the paper's four regimes side by side: each regime's data / reconstruction / sample grid.

The paper shows one example model per regime (auto-decoder, semantic, syntactic, auto-encoder) so the
reader can see what a rate buys: an auto-decoder's reconstructions ignore the input, a semantic encoder
keeps the digit but not its style, a syntactic one keeps the style too, an auto-encoder copies the input.
Each cell's PNG (grids/<cell_id>.png, written by rdsweep.training.evaluate.save_image_grids) becomes one band,
headed by its regime and label, in the order the caller gives.
"""
from __future__ import annotations

from pathlib import Path

from rdsweep.errors import UserError

DPI = 100
MARGIN = 12      # px around the figure and between bands
HEADER = 26      # px of text above each band
TITLE = 34       # px for the figure title
LABEL_GAP = 8    # points between a band's regime and its label
# The texts' fonts: the same for measuring the figure's width as for drawing.
TITLE_FONT = {"fontsize": 13}
REGIME_FONT = {"fontsize": 11, "fontweight": "bold"}
LABEL_FONT = {"fontsize": 10}


def compose_regime_grids(rows: list[dict], path: str | Path, title: str | None = None) -> Path:
    """rows: [{"regime": str, "label": str, "png": Path}, ...], top to bottom. Each band shows its PNG at
    its own pixel size (no resampling, so the digits stay sharp) under its regime (bold) and label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    path = Path(path)
    if not rows:
        raise UserError("no regimes to show: give at least one cell's image grid")
    if not path.parent.is_dir():
        raise UserError(f"cannot write {path}: directory {path.parent} does not exist")
    for row in rows:
        if not Path(row["png"]).is_file():
            raise UserError(f"no image grid for the {row['regime']} cell at {row['png']}: "
                            f"train it with [evaluation] images = true")
    images = [mpimg.imread(Path(row["png"])) for row in rows]

    # Lay the bands out in pixels, then convert to figure fractions (matplotlib's y axis points up). The
    # figure is as wide as its widest image or line of text, so a long title or label is never cut off.
    fig = plt.figure(dpi=DPI)
    texts = [_width(fig, row["regime"], **REGIME_FONT) + LABEL_GAP * DPI / 72 + _width(fig, row["label"], **LABEL_FONT)
             for row in rows]
    width = 2 * MARGIN + round(max(*(im.shape[1] for im in images), *texts, _width(fig, title or "", **TITLE_FONT)))
    top = MARGIN + (TITLE if title else 0)
    height = top + sum(HEADER + im.shape[0] + MARGIN for im in images)
    fig.set_size_inches(width / DPI, height / DPI)
    if title:
        fig.text(0.5, 1 - (MARGIN + TITLE / 2) / height, title, ha="center", va="center", **TITLE_FONT)
    y = top
    for row, image in zip(rows, images):
        y += HEADER
        h, w = image.shape[:2]
        ax = fig.add_axes([MARGIN / width, 1 - (y + h) / height, w / width, h / height])
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="none", aspect="auto")
        ax.set_axis_off()
        # "regime  label" above the band: the label is placed after the bold regime's measured extent
        regime = ax.annotate(row["regime"], xy=(0, 1), xycoords="axes fraction", xytext=(0, 3),
                             textcoords="offset points", va="bottom", **REGIME_FONT)
        ax.annotate(row["label"], xy=(1, 0), xycoords=regime, xytext=(LABEL_GAP, 0), textcoords="offset points",
                    va="bottom", **LABEL_FONT)
        y += h + MARGIN
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _width(fig, text: str, **font) -> float:
    """The width in pixels that `text` takes in this figure's renderer."""
    if not text:
        return 0.0
    artist = fig.text(0, 0, text, **font)
    width = artist.get_window_extent(fig.canvas.get_renderer()).width
    artist.remove()
    return width
