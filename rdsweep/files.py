"""Writing files the way a shared ledger needs: whole or not at all, and readable as the user's umask says.

Every file rdsweep writes (cell results, checkpoints, tables, experiment records) goes through
`atomic_write`: the content lands in a temporary file beside the target, which then replaces it in one
rename, so a reader (collect, a relaunch, another node) sees the old file or the new one, never half of one.
`mkstemp` creates its file with mode 0600 whatever the umask; it is widened to what `open` would have
given, so colleagues on a shared filesystem can read the results when the user's umask lets them.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def umask() -> int:
    """The process's umask, read without changing it where Linux allows (changing it, even briefly, would
    race with other threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write `path`'s new content to; on success it replaces `path`.

    An OSError about the temporary file (storage full, read-only, gone: creating, writing or renaming it) is
    raised again naming `path`, the file the user knows: the temporary name (.NAME.xxxxxxxx.tmp) is removed and
    means nothing to them. Its errno, and so its class (PermissionError, ...), is kept."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise _naming(e, path) from e
    try:
        os.fchmod(fd, 0o666 & ~umask())
        os.close(fd)
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            Path(tmp).unlink(missing_ok=True)
        except OSError:
            pass   # the storage is failing: the error that brought us here is the one to report
        if isinstance(e, OSError) and (e.filename is None or os.fspath(e.filename) == tmp):
            raise _naming(e, path) from e
        raise


def _naming(error: OSError, path: Path) -> OSError:
    """The same error about `path`: OSError(errno, ...) gives the errno's own class (PermissionError, ...)."""
    return OSError(error.errno, error.strerror or str(error), str(path))


def mount_point(path: Path) -> str:
    """The mount point of the filesystem that holds path (the nearest existing folder's)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return str(path)
