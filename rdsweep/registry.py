"""Registries: the one place a model family, a dataset or an objective is defined (docs/extending.md).

Each kind has one registry, a read-only mapping from name to entry. The built-ins are added by their own
modules (models/families.py, data/datasets.py, training/objectives.py); plugins come in two ways, and are found the first time
a name is not a built-in or the registry is listed:

- an installed package's entry points, in the groups `rdsweep.families`, `rdsweep.datasets` and
  `rdsweep.objectives` (the entry point's name is the name users write; its value names the entry object);
- an import path written where a name goes, "package.module:attribute" (the module must be importable on every
  Ray node, as rdsweep itself must).

Every entry carries its `Source` (package and version), which enters the cells that use it (cells.py) and the
table. Anything wrong with a plugin is one PluginError (a UserError: exit 2, one line) naming it.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from functools import cache
from typing import Generic, TypeVar

from rdsweep import __version__
from rdsweep.errors import UserError, one_line

# "package.module:attribute": what an import path looks like (a directory dataset "idx:/data" has a slash)
IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class PluginError(UserError):
    """A plugin that cannot be imported, names nothing, or breaks the contract of its kind."""


@dataclass(frozen=True)
class Source:
    """Where an entry comes from: `package` (a distribution name; "rdsweep" for the built-ins) at `version`
    (None for a module that is not part of an installed distribution), found `via` "built-in", "entry point"
    or "import path"."""
    package: str = "rdsweep"
    version: str | None = __version__
    via: str = "built-in"

    @property
    def builtin(self) -> bool:
        return self.via == "built-in"

    @property
    def pin(self) -> str:
        """What a cell records of it: "package==version" ("package" when the version is unknown)."""
        return self.package if self.version is None else f"{self.package}=={self.version}"

    def __str__(self) -> str:
        if self.builtin:
            return "built-in"
        return f"{self.package} {self.version}" if self.version else f"{self.package} (no version: not installed)"


BUILTIN = Source()
T = TypeVar("T")


class Registry(Mapping, Generic[T]):
    """Entries of one kind by name: the built-ins in the order they were added, then the installed plugins.
    An import path is resolved on lookup (and kept, so it is imported once). A plugin that fails to load is
    reported when its name is looked up (`broken` lists them), and does not hide the others."""

    def __init__(self, kind: str, group: str, entry_type: type):
        self.kind, self.group, self.entry_type = kind, group, entry_type
        self._entries: dict[str, T] = {}
        self._broken: dict[str, PluginError] = {}
        self._plugins_loaded = False

    def add(self, entry: T) -> T:
        """Register a built-in entry."""
        self._entries[entry.name] = self._checked(entry, entry.name, BUILTIN, f"{self.kind} {entry.name!r}")
        return entry

    def __getitem__(self, name: str) -> T:
        if name in self._entries:
            return self._entries[name]
        self._load_plugins()
        if name in self._entries:
            return self._entries[name]
        if name in self._broken:
            raise self._broken[name]
        if isinstance(name, str) and IMPORT_PATH.match(name):
            self._entries[name] = self._import(name)
            return self._entries[name]
        raise KeyError(name)

    def __contains__(self, name) -> bool:
        """Whether the name is an entry; False (not an error) for a plugin that does not load."""
        try:
            self[name]
        except (KeyError, TypeError, PluginError):
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        self._load_plugins()
        return iter([name for name in self._entries if not IMPORT_PATH.match(name)])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def builtins(self) -> list[T]:
        return [e for e in self._entries.values() if e.source.builtin]

    @property
    def broken(self) -> list[str]:
        """Why each installed plugin that does not load does not."""
        self._load_plugins()
        return [str(e) for e in self._broken.values()]

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for point in importlib.metadata.entry_points(group=self.group):
            dist = point.dist
            source = Source(dist.name if dist else point.module, dist.version if dist else None, "entry point")
            where = f"{self.kind} plugin {point.name!r} ({source.pin}, entry point {point.value})"
            try:
                if point.name in self._entries:
                    raise PluginError(f"{where}: the name {point.name!r} is taken by the "
                                      f"{self._entries[point.name].source} {self.kind}; rename the entry point")
                try:
                    entry = point.load()
                except Exception as e:   # whatever the plugin's import raised: one line, not a traceback
                    raise PluginError(f"{where}: cannot be loaded: {type(e).__name__}: {one_line(e, 300)}") from None
                self._entries[point.name] = self._checked(entry, point.name, source, where)
            except PluginError as e:
                self._broken.setdefault(point.name, e)

    def _import(self, path: str) -> T:
        where = f"{self.kind} {path!r}"
        entry = resolve_path(path, where)
        return self._checked(entry, path, _source_of(path.partition(":")[0]), where)

    def _checked(self, entry, name: str, source: Source, where: str) -> T:
        """The entry under its registered name and source, after its kind's checks."""
        if not isinstance(entry, self.entry_type):
            raise PluginError(f"{where}: is a {type(entry).__name__}, not an rdsweep.{self.entry_type.__name__} "
                              f"(docs/extending.md)")
        entry = replace(entry, name=name, source=source)
        entry.check(where)
        return entry


def resolve_path(path: str, where: str):
    """The object an import path "package.module:attribute" names; a PluginError saying what is missing."""
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise PluginError(f"{where}: no module named {e.name!r} (is it installed, or on PYTHONPATH?)") from None
    except Exception as e:   # whatever the plugin's import raised: one line, not a traceback
        raise PluginError(f"{where}: importing {module_name!r} failed: {type(e).__name__}: {one_line(e, 300)}") from None
    found = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise PluginError(f"{where}: module {module_name!r} has no attribute {attribute!r}")
        found = getattr(found, part)
    return found


def function(value, where: str) -> Callable:
    """An entry's function (a family's build, a dataset's load, an objective's loss): itself, or the one its
    import path names, imported now."""
    return resolve_path(value, where) if isinstance(value, str) else value


# The field checks the entry types share (each entry's `check` adds its own)
def require_text(where: str, field: str, value) -> None:
    if not isinstance(value, str) or not value:
        raise PluginError(f"{where}: {field} must be a non-empty string, got {value!r}")


def require_function(where: str, field: str, value, signature: str) -> None:
    if not (callable(value) or isinstance(value, str)):
        raise PluginError(f"{where}: {field} must be a function {signature} or its import path")


def require_shape(where: str, field: str, value) -> None:
    if value is not None and not (isinstance(value, tuple) and all(isinstance(n, int) and n > 0 for n in value)):
        raise PluginError(f"{where}: {field} must be a tuple of positive integers or None, got {value!r}")


@cache
def _source_of(module_name: str) -> Source:
    """The installed distribution a module belongs to, with its version; the bare module when it belongs to none."""
    top = module_name.partition(".")[0]
    for dist in importlib.metadata.packages_distributions().get(top, []):
        try:
            return Source(dist, importlib.metadata.version(dist), "import path")
        except importlib.metadata.PackageNotFoundError:
            continue
    return Source(top, None, "import path")


def pins(*entries) -> str | None:
    """What the cells using these entries record of their plugins: "pkg==1.0" (sorted, comma-separated), or None
    when every one is built in (so the cells of built-ins keep their ids)."""
    found = sorted({e.source.pin for e in entries if not e.source.builtin})
    return ",".join(found) or None
