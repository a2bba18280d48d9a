"""What a sweep can be made of: the family, dataset and objective registries as tables, built-ins and installed
plugins side by side, each with where it comes from (`rdsweep families`, `rdsweep datasets`, `rdsweep objectives`)."""
from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from rdsweep.data.datasets import DATASETS
from rdsweep.models.families import FAMILIES
from rdsweep.training.objectives import KNOBS, OBJECTIVES


def families_table() -> Table:
    table = Table(title="rdsweep families (use --family=NAME or --family=CODE)")
    for col in ("name", "code", "data", "from", "components"):
        table.add_column(col, no_wrap=col != "components")
    for f in FAMILIES.values():
        data = f.data_kind + (f" {_shape(f.shape)}" if f.shape and not f.source.builtin else "")
        table.add_row(f.name, f.code or "", data, str(f.source), f.about)
    return table


def datasets_table() -> Table:
    table = Table(title="rdsweep datasets (use --dataset=NAME, or dataset = \"NAME\" in a spec)")
    for col in ("name", "kind", "example", "labels", "from", "what"):   # a long file name folds, never cut
        table.add_column(col, no_wrap=col != "what", overflow="fold" if col == "what" else "ellipsis")
    for d in DATASETS.values():
        table.add_row(d.shown, d.kind, _shape(d.shape) if d.shape else "", "yes" if d.labelled else "",
                      str(d.source), d.about)
    return table


def objectives_table() -> Table:
    table = Table(title=escape("rdsweep objectives (use --objective=NAME, or kind = \"NAME\" in a spec's [[objective]])"))
    for col in ("name", "knob", "from", "minimises"):
        table.add_column(col, no_wrap=col != "minimises")
    for o in OBJECTIVES.values():
        table.add_row(o.name, KNOBS[o.knob], str(o.source), o.formula)
    return table


def _shape(shape) -> str:
    return "×".join(map(str, shape))
