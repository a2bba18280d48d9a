"""The house rules of the package's layout, read off its source: only the sweep's launch imports Ray, the
registries and everything the CLI needs to plan and read imports no torch, and no module-level imports cycle."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rdsweep"


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """The modules a file imports (every import, or only those run when the module is imported)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


MODULES = {_module(p): p for p in PACKAGE.rglob("*.py")}


def test_only_the_sweeps_launch_imports_ray():
    importers = {name for name, path in MODULES.items()
                 if any(m == "ray" or m.startswith("ray.") for m in _imports(path, top_level_only=False))}
    assert importers == {"rdsweep.sweep.launch"}


def test_module_level_imports_have_no_cycle():
    graph = {name: {m for m in _imports(path, top_level_only=True) if m in MODULES and m != name}
             for name, path in MODULES.items()}
    done, active = set(), []

    def visit(name):
        if name in active:
            raise AssertionError("import cycle: " + " → ".join(active[active.index(name):] + [name]))
        if name in done:
            return
        active.append(name)
        for dependency in sorted(graph[name]):
            visit(dependency)
        active.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_planning_and_reading_import_neither_torch_nor_ray():
    """What `rdsweep status`, `collect`, `frontier`, `select` and a spec's planning load stays fast."""
    light = ["rdsweep.cli", "rdsweep.spec", "rdsweep.cells", "rdsweep.catalog", "rdsweep.registry",
             "rdsweep.data.datasets", "rdsweep.training.objectives", "rdsweep.models.families",
             "rdsweep.sweep.status", "rdsweep.sweep.ledger", "rdsweep.sweep.plan_view", "rdsweep.training.report", "rdsweep.analysis.collect", "rdsweep.analysis.frontier",
             "rdsweep.analysis.select"]
    code = f"import sys\nfor m in {light!r}: __import__(m)\nprint('torch' in sys.modules, 'ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
