"""Rewrites the `rdsweep select` outputs that docs/selection.md quotes (the three commands
tests/test_select.py holds it to) with what the command prints today on the committed mnist5k table, in an
80-column terminal; run after the table changes. The page's prose around them is not touched: read it
again against the new numbers.

    python docs/studies/selection_quotes.py
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = [   # (the command as the page shows it, the objective its table is filtered to)
    ("rdsweep select beta.parquet --probe 0.8", "beta"),
    ("rdsweep select docs/studies/mnist5k/frontier.parquet --rate 5 --rate 20 --probe 0.8", None),
    ("rdsweep select docs/studies/mnist5k/frontier.parquet --by-setting --probe 0.8", None),
]
RDSWEEP = str(Path(sys.executable).parent / "rdsweep")

page = ROOT / "docs" / "selection.md"
doc = page.read_text()
with tempfile.TemporaryDirectory() as tmp:
    for command, objective in COMMANDS:
        cwd = ROOT
        if objective is not None:
            table = pq.read_table(ROOT / "docs" / "studies" / "mnist5k" / "frontier.parquet")
            pq.write_table(table.filter(pc.equal(table["objective"], objective)), Path(tmp) / f"{objective}.parquet")
            cwd = Path(tmp)
        printed = subprocess.run([RDSWEEP, *command.split()[1:]], cwd=cwd, capture_output=True, text=True,
                                 env={**os.environ, "COLUMNS": "80"})
        if printed.returncode != 0:
            sys.exit(f"{command}: {printed.stderr.strip()}")
        block = f"    {command}\n\n"
        start = doc.index(block) + len(block)
        lines = doc[start:].split("\n")
        end = 0
        while end < len(lines) and (not lines[end] or lines[end].startswith("    ")):
            end += 1
        while end > 0 and not lines[end - 1]:   # the blank lines before the next paragraph stay
            end -= 1
        quoted = "\n".join(f"    {line}".rstrip() for line in printed.stdout.strip("\n").splitlines())
        doc = doc[:start] + quoted + "\n" + "\n".join(lines[end:]) if end < len(lines) else doc[:start] + quoted + "\n"
page.write_text(doc)
print(f"rewrote {len(COMMANDS)} quotes in {page}")
